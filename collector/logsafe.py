"""Text from input made safe for one log line: control characters escaped, length bounded.

A field of an export or a webhook body can hold NUL, ESC (terminal control sequences), CR
(a forged line) or Unicode line separators and bidi overrides. Everything logged that came
from input goes through `printable` at log time: the log stays one line per event and what
a terminal shows is what was received.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
LIMIT = 300


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def printable(text: object, limit: int = LIMIT) -> str:
    """`text` as str with every non-printable character (str.isprintable: C0/C1 controls,
    DEL, format characters such as bidi overrides, line and paragraph separators) written
    as a backslash escape, cut to `limit` characters with "..." when longer."""
    value = text if isinstance(text, str) else str(text)
    if not value.isprintable():
        value = "".join(c if c.isprintable() else _escape(c) for c in value)
    if len(value) > limit:
        value = value[: max(0, limit - 3)] + "..."
    return value


def describe_error(exc: BaseException) -> str:
    """One bounded, printable line for an exception (its message, else its type's name)."""
    # KeyError's str() is the repr of its key (ZoneInfoNotFoundError is a KeyError).
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return printable(text or type(exc).__name__)
