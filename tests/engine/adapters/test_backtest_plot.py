"""The backtest's SVG picture: well-formed whatever the series and its name hold, every detection drawn up to a cap,
and a long series drawn from a bounded number of points that keeps its spikes."""

from __future__ import annotations

from xml.etree import ElementTree

import numpy as np

from engine.adapters.plots import MAX_DOTS, MAX_POINTS, backtest_svg
from engine.core.backtest import BacktestResult

SVG = "{http://www.w3.org/2000/svg}"


def _result(values: np.ndarray, detections: np.ndarray) -> BacktestResult:
    times = 1_700_000_000.0 + 60.0 * np.arange(len(values), dtype=np.float64)
    scores = np.where(detections, 0.9, 0.1).astype(np.float64)
    return BacktestResult("default", 0.6, times, values, scores, detections)


def _points(picture: ElementTree.Element, css_class: str) -> list[tuple[float, float]]:
    [line] = picture.findall(f"{SVG}polyline[@class='{css_class}']")
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in (line.get("points") or "").split())]


def test_a_hostile_name_is_text_and_the_picture_stays_well_formed() -> None:
    values = np.array([1.0, np.nan, np.inf, 2.0, -np.inf, 3.0])
    detections = np.array([False, True, False, True, True, False])
    title = '<script>alert("x")</script> & "quotes".csv'
    picture = ElementTree.fromstring(backtest_svg(_result(values, detections), title=title))
    assert picture.find(f"{SVG}title").text == title  # type: ignore[union-attr]
    assert picture.find(f".//{SVG}script") is None
    # Only the finite detection is a dot; non-finite values are left out of the line.
    assert len(picture.findall(f"{SVG}circle[@class='detection']")) == 1
    assert len(_points(picture, "values")) == 3


def test_a_long_series_keeps_its_spike_within_the_point_budget() -> None:
    values = np.sin(np.arange(200_000) / 500.0)
    values[123_456] = 40.0
    picture = ElementTree.fromstring(backtest_svg(_result(values, np.zeros(len(values), bool)), title="long"))
    drawn = _points(picture, "values")
    assert len(drawn) <= MAX_POINTS
    # The spike (value 40 over a wave between -1 and 1) is drawn, once, far above every other point.
    top = min(y for _, y in drawn)
    assert [y for _, y in drawn if y < top + 100] == [top]


def test_detections_past_the_cap_are_counted_not_drawn() -> None:
    values = np.ones(MAX_DOTS + 500)
    picture = ElementTree.fromstring(backtest_svg(_result(values, np.ones(len(values), bool)), title="all"))
    assert len(picture.findall(f"{SVG}circle[@class='detection']")) == MAX_DOTS
    legend = [text.text or "" for text in picture.findall(f"{SVG}text")][1]
    assert f"{MAX_DOTS + 500} detections (red; the first {MAX_DOTS} drawn)" in legend
