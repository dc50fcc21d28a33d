"""Model-provider adapters: the SSE reader, the chunk normaliser, and LiteLLM in this process
(:class:`LiteLLMModel`) or in a worker process (:class:`LiteLLMProcessModel`, the default of
``oturn.Agent("provider/model")``).

Importing this package never imports LiteLLM. :class:`LiteLLMProcessModel` and
:class:`LiteLLMWorker` are loaded on first access (``python -m oturn.llm.worker`` must not
find the worker module imported already).
"""

from typing import TYPE_CHECKING, Any

from oturn.llm.errors import parse_retry_after, translate_error
from oturn.llm.litellm import LiteLLMModel, prewarm
from oturn.llm.normalize import error_info, normalize_chunk, normalize_sse_payload, usage_from_dict
from oturn.llm.sse import SSEDecoder, SSEEvent, iter_sse

if TYPE_CHECKING:
    from oturn.llm.process import LiteLLMProcessModel, LiteLLMWorker

__all__ = [
    "LiteLLMModel",
    "LiteLLMProcessModel",
    "LiteLLMWorker",
    "SSEDecoder",
    "SSEEvent",
    "error_info",
    "iter_sse",
    "normalize_chunk",
    "normalize_sse_payload",
    "parse_retry_after",
    "prewarm",
    "translate_error",
    "usage_from_dict",
]


def __getattr__(name: str) -> Any:
    if name in ("LiteLLMProcessModel", "LiteLLMWorker"):
        from oturn.llm import process

        return getattr(process, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
