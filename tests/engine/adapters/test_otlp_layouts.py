"""Kept layouts: a body matches only where it differs in the fixed fields' payloads; bounded in number and bytes."""

from __future__ import annotations

import numpy as np

from engine.adapters.otlp.layouts import Layouts


def _keep(layouts: Layouts, body: bytes, payloads: list[int]) -> None:
    none = np.zeros(0, dtype=np.int64)
    layouts.keep(
        body,
        starts=[0],
        ends=[len(body)],
        payloads=np.array(payloads, dtype=np.int64),
        series=none,
        kinds=none.astype(np.int8),
    )


def test_a_body_matches_where_only_its_payloads_differ() -> None:
    layouts = Layouts()
    body = bytes(range(30))
    _keep(layouts, body, [3, 20])
    in_payloads = bytearray(body)
    in_payloads[3:11] = b"\xff" * 8
    in_payloads[27] = 0xEE
    assert layouts.find(bytes(in_payloads)) is not None
    for outside in (2, 11, 19, 28, 29):
        changed = bytearray(body)
        changed[outside] ^= 1
        assert layouts.find(bytes(changed)) is None, outside
    assert layouts.find(body + b"\x00") is None


def test_layouts_are_bounded_in_number_and_bytes() -> None:
    layouts = Layouts(max_layouts=2, max_bytes=100)
    for size in (10, 20, 30):
        _keep(layouts, bytes(size), [])
    assert len(layouts) == 2
    assert layouts.find(bytes(10)) is None
    assert layouts.find(bytes(20)) is not None
    # 20 was used last: 30 goes first to make room for 70.
    _keep(layouts, bytes(70), [])
    assert layouts.find(bytes(30)) is None
    assert layouts.find(bytes(70)) is not None
    _keep(layouts, bytes(101), [])
    assert layouts.find(bytes(101)) is None
