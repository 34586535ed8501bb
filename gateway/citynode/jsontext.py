"""JSON text from the outside world, parsed into values that can always be written out again.

JSON may escape a lone UTF-16 surrogate ("\\ud800"); Python keeps it as a str that cannot be encoded as
UTF-8, so a reading carrying one (say, as a gateway id) would fail when it is published. Such characters are
not text in any encoding, so they are replaced with U+FFFD, the way a UTF-8 decoder treats invalid bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(text: str, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """json.loads, with lone surrogates replaced. Raises what json.loads raises."""
    doc = json.loads(text, parse_constant=parse_constant)
    # Paired surrogates (an escaped emoji) decode to one character; only a lone one survives as a surrogate.
    return _clean(doc) if _SURROGATE_ESCAPE.search(text) else doc


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
