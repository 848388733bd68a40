"""PromQL string literals, read and written exactly as Prometheus does: the one place label-matcher values (and any
other quoted PromQL value) are unquoted and quoted.

Prometheus' lexer (``promql/parser/lex.go``) and its ``strutil.Unquote`` follow Go's string literals, with single
quotes meaning the same as double quotes:

* ``"..."`` and ``'...'`` take the escapes ``\\a \\b \\f \\n \\r \\t \\v \\\\``, the escaped opening quote (``\\"``
  in double quotes, ``\\'`` in single quotes), ``\\xHH`` and ``\\OOO`` (a byte: two hex digits, or three octal
  digits up to 255), ``\\uHHHH`` and ``\\UHHHHHHHH`` (a code point, surrogates excluded). Any other escape, a raw
  line feed or a missing closing quote is an error.
* Strings in backticks (`` `...` ``) are raw: no escapes, any character but a backtick, line feeds included.

Errors use Prometheus' own words. One deliberate difference: ``\\x`` and octal escapes give bytes, and Prometheus
keeps bytes that are not UTF-8 (``"\\xff"``); no label value can hold them (Prometheus accepts only UTF-8 label
values), and Python text cannot, so they are refused here.
"""

from __future__ import annotations

import enum
import re

# The escapes with a letter (or the character itself) after the backslash, in both directions.
_NAMED_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
_WRITTEN = {char: "\\" + letter for letter, char in _NAMED_ESCAPES.items()} | {'"': '\\"'}
# Numeric escapes: digits after the letter, their base, the largest value, and whether the value is a byte.
_NUMERIC = {"x": (2, 16, 0xFF, True), "u": (4, 16, 0x10FFFF, False), "U": (8, 16, 0x10FFFF, False)}
_OCTAL = (3, 8, 0xFF, True)
# Only ASCII digits count (Go's digitVal); Python's int() would also take other scripts' digits.
_DIGITS = {char: int(char, 16) for char in "0123456789abcdefABCDEF"}
# The next character that needs attention inside quotes of each kind: the closing quote, an escape, a line feed.
_SPECIAL = {quote: re.compile(f"[{quote}\\\\\\n]") for quote in "\"'"}
# Lone surrogates cannot be encoded as UTF-8; Prometheus sees such input as invalid runes.
_SURROGATE = re.compile("[\ud800-\udfff]")


class PromQLStringProblem(enum.StrEnum):
    """What is wrong with a string literal; the sentences are Prometheus' own where it has one."""

    NOT_A_STRING = "expected a string in double quotes, single quotes or backticks"
    UNTERMINATED = "unterminated quoted string"
    UNTERMINATED_RAW = "unterminated raw string"
    TRAILING_TEXT = "unexpected text after the closing quote"
    ESCAPE_NOT_TERMINATED = "escape sequence not terminated"
    UNKNOWN_ESCAPE = "unknown escape sequence"
    ILLEGAL_ESCAPE_CHARACTER = "illegal character in escape sequence"
    INVALID_CODE_POINT = "escape sequence is an invalid Unicode code point"
    INVALID_UTF8 = "invalid UTF-8 rune"
    BYTES_NOT_UTF8 = "escaped bytes are not valid UTF-8"


class PromQLStringError(ValueError):
    """A string literal Prometheus would refuse: the ``problem``, the ``position`` (an index into ``literal``) where
    it is and, for a bad escape, the offending ``character``."""

    def __init__(self, literal: str, position: int, problem: PromQLStringProblem, character: str | None = None) -> None:
        self.literal = literal
        self.position = position
        self.problem = problem
        self.character = character
        shown = repr(literal) if len(literal) <= 200 else f"{literal[:200]!r}..."
        super().__init__(f"invalid string {shown}: {self.reason} at character {position}")

    @property
    def reason(self) -> str:
        """The problem as Prometheus words it, naming the character as Go's ``%#U`` does."""
        if self.character is None:
            return str(self.problem)
        code = f"U+{ord(self.character):04X}"
        if self.character.isprintable():
            code += f" '{self.character}'"
        if self.problem is PromQLStringProblem.UNKNOWN_ESCAPE:
            return f"unknown escape sequence {code}"
        return f"illegal character {code} in escape sequence"


def unquote(literal: str) -> str:
    """The value a whole PromQL string literal (quotes included) stands for; PromQLStringError (a ValueError)
    saying what is wrong and where."""
    surrogate = _SURROGATE.search(literal)
    if surrogate is not None:
        raise PromQLStringError(literal, surrogate.start(), PromQLStringProblem.INVALID_UTF8)
    opener = literal[:1]
    if opener == "`":
        close = literal.find("`", 1)
        if close == -1:
            raise PromQLStringError(literal, len(literal), PromQLStringProblem.UNTERMINATED_RAW)
        _check_end(literal, close)
        return literal[1:close]
    if opener not in ('"', "'"):
        raise PromQLStringError(literal, 0, PromQLStringProblem.NOT_A_STRING)
    return _Reader(literal, opener).read()


def quote(value: str) -> str:
    """``value`` as a double-quoted literal that Prometheus (and ``unquote``) reads back as ``value``.

    Written as Go's ``strconv.Quote`` writes it: printable characters as they are, the lettered escapes where
    there is one, other control characters as ``\\xHH``, other unprintable ones as ``\\uHHHH`` or ``\\UHHHHHHHH``.
    A lone surrogate (not Unicode text, so never a label value) comes out as ``\\uDXXX``, which both refuse."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return '"' + "".join([_written(char) for char in value]) + '"'


def _written(char: str) -> str:
    escaped = _WRITTEN.get(char)
    if escaped is not None:
        return escaped
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _check_end(literal: str, close: int) -> None:
    if close != len(literal) - 1:
        raise PromQLStringError(literal, close + 1, PromQLStringProblem.TRAILING_TEXT)


class _Reader:
    """One pass over a single- or double-quoted literal, left to right, so the first error is the one Prometheus'
    lexer reports first."""

    def __init__(self, literal: str, opener: str) -> None:
        self._literal = literal
        self._opener = opener
        self._parts: list[str] = []
        # Bytes from consecutive \x and octal escapes; UTF-8 sequences may span several of them ("\xc3\xa9").
        self._bytes = bytearray()
        self._bytes_start = 0

    def read(self) -> str:
        literal, special = self._literal, _SPECIAL[self._opener]
        position = 1
        while True:
            found = special.search(literal, position)
            end = len(literal) if found is None else found.start()
            if end > position:
                self._append(literal[position:end])
            position = end
            if found is None or literal[position] == "\n":
                raise PromQLStringError(literal, position, PromQLStringProblem.UNTERMINATED)
            if literal[position] == self._opener:
                _check_end(literal, position)
                self._flush_bytes()
                return "".join(self._parts)
            position = self._escape(position)

    def _escape(self, backslash: int) -> int:
        """Decode the escape at ``backslash``; the index just past it."""
        literal = self._literal
        letter_at = backslash + 1
        if letter_at == len(literal):
            raise PromQLStringError(literal, letter_at, PromQLStringProblem.ESCAPE_NOT_TERMINATED)
        letter = literal[letter_at]
        named = _NAMED_ESCAPES.get(letter)
        if named is not None or letter == self._opener:
            self._append(named or letter)
            return letter_at + 1
        if letter in "01234567":
            (digits, base, largest, is_byte), first = _OCTAL, letter_at
        elif letter in _NUMERIC:
            (digits, base, largest, is_byte), first = _NUMERIC[letter], letter_at + 1
        else:
            raise PromQLStringError(literal, letter_at, PromQLStringProblem.UNKNOWN_ESCAPE, letter)
        value = 0
        for index in range(first, first + digits):
            if index == len(literal):
                raise PromQLStringError(literal, index, PromQLStringProblem.ESCAPE_NOT_TERMINATED)
            digit = _DIGITS.get(literal[index], 16)
            if digit >= base:
                problem = PromQLStringProblem.ILLEGAL_ESCAPE_CHARACTER
                raise PromQLStringError(literal, index, problem, literal[index])
            value = value * base + digit
        if value > largest or 0xD800 <= value < 0xE000:
            raise PromQLStringError(literal, backslash, PromQLStringProblem.INVALID_CODE_POINT)
        if is_byte:
            if not self._bytes:
                self._bytes_start = backslash
            self._bytes.append(value)
        else:
            self._append(chr(value))
        return first + digits

    def _append(self, text: str) -> None:
        self._flush_bytes()
        self._parts.append(text)

    def _flush_bytes(self) -> None:
        if not self._bytes:
            return
        try:
            self._parts.append(self._bytes.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise PromQLStringError(self._literal, self._bytes_start, PromQLStringProblem.BYTES_NOT_UTF8) from exc
        self._bytes.clear()
