"""Protobuf wire bytes written by hand, for bodies the protobuf library would not write (malformed, laid out
otherwise, or too large to build as objects quickly)."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes, *, overlong: bool = False) -> bytes:
    """A length-delimited field; ``overlong``: its tag (one byte, field numbers below 16) written in two, which a
    parse reads as the same tag."""
    tag = varint(number << 3 | 2)
    if overlong:
        tag = bytes([tag[0] | 0x80, 0])
    return tag + varint(len(payload)) + payload
