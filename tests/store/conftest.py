"""Store tests: let pytest rewrite the asserts of the conformance kit (it lives in the package)."""

import pytest

pytest.register_assert_rewrite("oturn.testing.store_kit")
