"""Text from input is logged on one line with its control characters escaped (issue 10, 12)."""

from __future__ import annotations

from collector.logsafe import printable


def test_control_characters_are_escaped() -> None:
    # A disposition from a hostile export: clear-screen, carriage return, NUL, a forged line.
    raw = "\x1b[2J\rANSWERED\x00\nts=2026 level=info msg=forged\x7f\x9b"
    assert printable(raw) == (
        "\\x1b[2J\\rANSWERED\\x00\\nts=2026 level=info msg=forged\\x7f\\x9b"
    )


def test_unicode_separators_and_bidi_overrides_are_escaped() -> None:
    # U+2028 (line separator) splits a line in some viewers; U+202E reverses what follows.
    assert printable("a\u2028b\u202ec") == "a\\u2028b\\u202ec"


def test_printable_text_is_unchanged_and_bounded() -> None:
    assert printable("Køen «salg», 12 € — ok") == "Køen «salg», 12 € — ok"
    assert printable("x" * 500) == "x" * 297 + "..."
    # The limit counts the escaped text: 9 characters (two \x00 escapes and a backslash),
    # then "...": 12 in all, and still no raw control character.
    assert printable("\x00" * 10, limit=12) == "\\x00\\x00\\..."
    assert len(printable("\x00" * 10, limit=12)) == 12
    assert printable(ValueError("bad\rvalue")) == "bad\\rvalue"
