"""PromQL string literals read and written as Prometheus does: the cases come from Prometheus' own lexer and
``strutil.Unquote`` (and the Go rules they follow), then properties over arbitrary text."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine.domain.promql_strings import PromQLStringError, PromQLStringProblem, quote, unquote

P = PromQLStringProblem


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        # Prometheus util/strutil/quote_test.go (unquotetests): the three quote kinds, each empty and plain.
        ('""', ""),
        ('"abc"', "abc"),
        ('"☺"', "☺"),
        ('"hello world"', "hello world"),
        ("''", ""),
        ("'abc'", "abc"),
        ("``", ""),
        ("`hello world`", "hello world"),
        # The lettered escapes (Go's spec, "Rune literals"); each quote kind escapes only its own quote, and the
        # other quote needs no escape.
        (r'"\a\b\f\n\r\t\v\\\""', '\a\b\f\n\r\t\v\\"'),
        (r"'\a\b\f\n\r\t\v\\\''", "\a\b\f\n\r\t\v\\'"),
        ('"\'"', "'"),
        ("'\"'", '"'),
        # Backslashes as SREs write them in label values: a Windows path, and a regex's dot (quote_test.go's
        # "\\" case).
        (r'"a\\b"', "a\\b"),
        (r'"C:\\\\x"', "C:\\\\x"),
        (r'"fraud\\.v2"', "fraud\\.v2"),
        # Numeric escapes, from quote_test.go: \u and \U give code points, \x and \OOO give bytes, which make
        # UTF-8 text when they form it (\xc3\xa9 is é); \U0001011111 is one escape, then "11".
        (r'"\u1234"', "\u1234"),
        (r'"\u00e9"', "é"),
        (r'"\U00010111"', "\U00010111"),
        (r'"\U0001011111"', "\U0001011111"),
        (r'"\U0010FFFF"', "\U0010ffff"),
        (r'"\x41"', "A"),
        (r'"\x7F"', "\x7f"),
        (r'"\101"', "A"),
        (r'"\000"', "\x00"),
        (r'"\xc3\xa9"', "é"),
        (r'"\303\251"', "é"),
        (r'"\xe2\x98\xba ok"', "☺ ok"),
        (r"'\u1234'", "\u1234"),
        # Raw strings (quote_test.go): backslashes stay, line feeds and tabs may be written as they are.
        (r"`\xFF`", r"\xFF"),
        (r"`\377`", r"\377"),
        ("`\\`", "\\"),
        ("`a\nb`", "a\nb"),
        ("`\t\"'`", "\t\"'"),
        # A raw carriage return or tab inside quotes is kept (only a line feed ends a quoted string).
        ('"a\rb\tc"', "a\rb\tc"),
    ],
)
def test_values_are_those_prometheus_reads(literal: str, value: str) -> None:
    assert unquote(literal) == value


@pytest.mark.parametrize(
    ("literal", "problem", "position", "message"),
    [
        # quote_test.go (misquoted): unterminated, or a line feed inside quotes (lex.go: "unterminated quoted
        # string"; a raw string without its backtick: "unterminated raw string").
        ('"', P.UNTERMINATED, 1, "unterminated quoted string"),
        ('"a', P.UNTERMINATED, 2, "unterminated quoted string"),
        ("\"'", P.UNTERMINATED, 2, "unterminated quoted string"),
        ('"\n"', P.UNTERMINATED, 1, "unterminated quoted string"),
        ("'\n'", P.UNTERMINATED, 1, "unterminated quoted string"),
        ("`", P.UNTERMINATED_RAW, 1, "unterminated raw string"),
        ("`xxx", P.UNTERMINATED_RAW, 4, "unterminated raw string"),
        # quote_test.go: a backslash before the closing quote escapes it, so the string never ends.
        ('"\\"', P.UNTERMINATED, 3, "unterminated quoted string"),
        ("'\\'", P.UNTERMINATED, 3, "unterminated quoted string"),
        ('"\\', P.ESCAPE_NOT_TERMINATED, 2, "escape sequence not terminated"),
        # lex.go lexEscape: unknown escapes, named as Go's %#U names a rune; the other kind's quote is unknown too
        # (quote_test.go: "\'" and '\"'); a backslash before a line feed is an unknown escape.
        (r'"\z"', P.UNKNOWN_ESCAPE, 2, "unknown escape sequence U+007A 'z'"),
        (r'"\9"', P.UNKNOWN_ESCAPE, 2, "unknown escape sequence U+0039 '9'"),
        (r'"\."', P.UNKNOWN_ESCAPE, 2, "unknown escape sequence U+002E '.'"),
        (r'"\d+"', P.UNKNOWN_ESCAPE, 2, "unknown escape sequence U+0064 'd'"),
        ('"\\\'"', P.UNKNOWN_ESCAPE, 2, "unknown escape sequence U+0027 '''"),
        (r"'\"'", P.UNKNOWN_ESCAPE, 2, "unknown escape sequence U+0022 '\"'"),
        ('"\\\n"', P.UNKNOWN_ESCAPE, 2, "unknown escape sequence U+000A"),
        # lex.go lexEscape: too few or wrong digits (quote_test.go: \19, \129, \x1!).
        (r'"\19"', P.ILLEGAL_ESCAPE_CHARACTER, 3, "illegal character U+0039 '9' in escape sequence"),
        (r'"\129"', P.ILLEGAL_ESCAPE_CHARACTER, 4, "illegal character U+0039 '9' in escape sequence"),
        (r"'\129'", P.ILLEGAL_ESCAPE_CHARACTER, 4, "illegal character U+0039 '9' in escape sequence"),
        (r'"\x1!"', P.ILLEGAL_ESCAPE_CHARACTER, 4, "illegal character U+0021 '!' in escape sequence"),
        (r'"\xG0"', P.ILLEGAL_ESCAPE_CHARACTER, 3, "illegal character U+0047 'G' in escape sequence"),
        (r'"\u12"', P.ILLEGAL_ESCAPE_CHARACTER, 5, "illegal character U+0022 '\"' in escape sequence"),
        # Only ASCII digits count, as in Go (Python's int() would take these Arabic-Indic ones).
        ('"\\u\u0661\u0662\u0663\u0664"', P.ILLEGAL_ESCAPE_CHARACTER, 3, "illegal character U+0661 '\u0661' in"),
        ('"\\x4', P.ESCAPE_NOT_TERMINATED, 4, "escape sequence not terminated"),
        # lex.go lexEscape: values past the byte or the last code point, and surrogates (quote_test.go:
        # \U12345678).
        (r'"\400"', P.INVALID_CODE_POINT, 1, "escape sequence is an invalid Unicode code point"),
        (r'"\U12345678"', P.INVALID_CODE_POINT, 1, "escape sequence is an invalid Unicode code point"),
        (r'"\U00110000"', P.INVALID_CODE_POINT, 1, "escape sequence is an invalid Unicode code point"),
        (r'"ok\uD800"', P.INVALID_CODE_POINT, 3, "escape sequence is an invalid Unicode code point"),
        (r'"\uDFFF"', P.INVALID_CODE_POINT, 1, "escape sequence is an invalid Unicode code point"),
        # lex.go lexString: input that is not UTF-8 (here, a lone surrogate in the text).
        ('"a\ud800"', P.INVALID_UTF8, 2, "invalid UTF-8 rune"),
        # Prometheus keeps bytes that are not UTF-8 (quote_test.go: "\xFF", "\377"); no label value holds them,
        # and Python text cannot, so they are refused.
        (r'"\xFF"', P.BYTES_NOT_UTF8, 1, "escaped bytes are not valid UTF-8"),
        (r'"\377"', P.BYTES_NOT_UTF8, 1, "escaped bytes are not valid UTF-8"),
        (r'"ok \xc3 \xa9"', P.BYTES_NOT_UTF8, 4, "escaped bytes are not valid UTF-8"),
        # Not one literal: no quote at all (quote_test.go: "", b"), or text after it.
        ("", P.NOT_A_STRING, 0, "expected a string"),
        ('b"', P.NOT_A_STRING, 0, "expected a string"),
        ('"a"b', P.TRAILING_TEXT, 3, "unexpected text after the closing quote"),
        ("`a`b`", P.TRAILING_TEXT, 3, "unexpected text after the closing quote"),
        ('"a" ', P.TRAILING_TEXT, 3, "unexpected text after the closing quote"),
    ],
)
def test_what_prometheus_refuses_is_refused(
    literal: str, problem: PromQLStringProblem, position: int, message: str
) -> None:
    with pytest.raises(PromQLStringError) as caught:
        unquote(literal)
    assert (caught.value.problem, caught.value.position) == (problem, position)
    assert message in caught.value.reason
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        # What Go's strconv.Quote (Prometheus' %q for matchers) writes (quote_test.go, quotetests).
        ("\a\b\f\r\n\t\v", r'"\a\b\f\r\n\t\v"'),
        ("\\", r'"\\"'),
        ("☺", '"☺"'),
        ("\x04", r'"\x04"'),
        ("\x7f", r'"\x7f"'),
        ("\u0085", r'"\u0085"'),
        ("\u200b", r'"\u200b"'),
        ("\U000e0001", r'"\U000e0001"'),
        ("\U0001f600", '"\U0001f600"'),
        ('say "hi"', r'"say \"hi\""'),
        ("it's", '"it\'s"'),
        ("C:\\dir", r'"C:\\dir"'),
        ("", '""'),
    ],
)
def test_values_are_written_as_go_quotes_them(value: str, literal: str) -> None:
    assert quote(value) == literal
    assert unquote(literal) == value


# Any text a label value can hold (Unicode without lone surrogates), with the characters that need escapes often.
_UNICODE = st.characters(codec="utf-8")


@given(st.text(st.one_of(st.sampled_from("\"'`\\\n\r\t\x00\x7f\u0085\u2028"), _UNICODE)))
@example('say "hi" \\ \n')
@example("ünïcødé ✓ 🚀 \U000e0001")
def test_every_text_reads_back_from_its_literal(value: str) -> None:
    assert unquote(quote(value)) == value


# Literals built from pieces whose values are known: the reader must give the pieces' values joined.
_PIECES = st.one_of(
    st.characters(codec="utf-8", exclude_characters='"\\\n').map(lambda c: (c, c)),
    st.sampled_from([(r"\a", "\a"), (r"\b", "\b"), (r"\f", "\f"), (r"\n", "\n"), (r"\r", "\r"), (r"\t", "\t")]),
    st.sampled_from([(r"\v", "\v"), (r"\\", "\\"), (r"\"", '"')]),
    st.integers(0, 0x7F).map(lambda n: (f"\\x{n:02X}", chr(n))),
    st.integers(0, 0x7F).map(lambda n: (f"\\{n:03o}", chr(n))),
    _UNICODE.map(lambda c: (f"\\u{ord(c):04x}", c) if ord(c) < 0x10000 else (f"\\U{ord(c):08X}", c)),
    # A character as the bytes of its UTF-8 form, each written \xHH.
    _UNICODE.map(lambda c: ("".join(f"\\x{b:02x}" for b in c.encode()), c)),
)


@given(st.lists(_PIECES, max_size=20))
def test_literals_read_as_the_sum_of_their_escapes(pieces: list[tuple[str, str]]) -> None:
    literal = '"' + "".join(written for written, _ in pieces) + '"'
    assert unquote(literal) == "".join(value for _, value in pieces)


@given(st.text(st.one_of(st.sampled_from("\"'`\\\nxuU01789abfG"), st.characters())))
@example('"' + "\\" * 100_001)
@example('"' + "\\x" * 50_000 + '"')
def test_any_text_is_read_or_refused_with_a_string_error(text: str) -> None:
    # Hostile input: whatever arrives, the answer is a value or a PromQLStringError, never another exception.
    for literal in (text, f'"{text}"', f"'{text}'", f"`{text}`"):
        with contextlib.suppress(PromQLStringError):
            unquote(literal)
