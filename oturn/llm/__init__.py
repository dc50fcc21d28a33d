"""Model-provider adapters: the SSE reader and the chunk normaliser (LiteLLM's adapter is loaded lazily).

Importing this package never imports LiteLLM.
"""

from oturn.llm.errors import parse_retry_after, translate_error
from oturn.llm.litellm import LiteLLMModel, prewarm
from oturn.llm.normalize import error_info, normalize_chunk, normalize_sse_payload, usage_from_dict
from oturn.llm.sse import SSEDecoder, SSEEvent, iter_sse

__all__ = [
    "LiteLLMModel",
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
