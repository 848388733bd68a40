"""The on-call page's pictures of signals: what each SVG holds, how many points it draws, and that outside text in
it is escaped."""

import math
import xml.etree.ElementTree as ET

import pytest

from engine.adapters.web.charts import MAX_POINTS, Marker, Window, downsample, signal_chart, window_of
from engine.domain.events import SeriesKey, Severity, Signal

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_772_571_600.0  # 2026-03-03 21:00 UTC


def _signal(**changes: object) -> Signal:
    values: dict[str, object] = {
        "series": SeriesKey.of("model_request_latency_p99_seconds", {"model": "fraud"}),
        "first_at": T0,
        "last_at": T0 + 600,
        "peak_at": T0 + 300,
        "peak_value": 0.9,
        "peak_score": 0.998,
        "count": 4,
        "severity": Severity.WARNING,
        "quiet_at": T0 + 1200,
    }
    return Signal(**(values | changes))  # type: ignore[arg-type]


def _points(count: int, start: float = T0 - 1800, step: float = 60.0) -> list[tuple[float, float]]:
    return [(start + i * step, 0.1 + 0.01 * math.sin(i)) for i in range(count)]


def _svg(markup: str) -> ET.Element:
    # The page's own output, parsed to check that it is well-formed XML.
    return ET.fromstring(markup)


def _polyline(svg: ET.Element) -> list[tuple[float, float]]:
    line = svg.find(f"{SVG}polyline")
    assert line is not None
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in line.attrib["points"].split())]


def test_a_picture_shows_the_values_the_anomalous_stretch_the_peak_and_the_markers() -> None:
    window = Window(T0 - 1800, T0 + 3600)
    markers = [
        Marker(T0, "opened"),
        Marker(T0 + 2400, "resolved"),
        Marker(T0 + 900, "step 1 scale requested", "action"),
    ]
    svg = _svg(signal_chart(_signal(), _points(90), window, markers))
    assert len(_polyline(svg)) == 90
    band = svg.find(f"{SVG}rect[@class='anomalous']")
    assert band is not None
    # 21:00 to 21:20 of 20:30..22:00 on a 884-wide plot that starts at x=64.
    assert float(band.attrib["x"]) == pytest.approx(64 + 884 * 1800 / 5400, abs=0.05)
    assert float(band.attrib["width"]) == pytest.approx(884 * 1200 / 5400, abs=0.05)
    peak = svg.find(f"{SVG}circle[@class='peak']")
    assert peak is not None
    assert "peak 0.9 (score 0.998) at 21:05" in "".join(peak.itertext())
    labels = [text.text for g in svg.iter(f"{SVG}g") for text in g.iter(f"{SVG}text")]
    assert labels == ["opened", "step 1 scale requested", "resolved"]
    assert [g.attrib["class"] for g in svg.iter(f"{SVG}g")] == [
        "marker marker-incident",
        "marker marker-action",
        "marker marker-incident",
    ]
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.attrib.get("class") == "axis" and ":" in (t.text or "")]
    assert ticks == ["20:30", "20:45", "21:00", "21:15", "21:30", "21:45", "22:00"]
    assert "anomalous from 21:00 to 21:20" in (svg.findtext(f"{SVG}title") or "")


def test_a_signal_still_anomalous_is_marked_up_to_its_last_anomaly() -> None:
    svg = _svg(signal_chart(_signal(quiet_at=None), _points(90), Window(T0 - 1800, T0 + 3600)))
    band = svg.find(f"{SVG}rect[@class='anomalous']")
    assert band is not None
    assert float(band.attrib["width"]) == pytest.approx(884 * 600 / 5400, abs=0.05)
    assert "(still anomalous)" in (svg.findtext(f"{SVG}title") or "")


def test_markers_close_together_share_one_line_and_markers_outside_are_left_out() -> None:
    window = Window(T0 - 1800, T0 + 3600)
    markers = [
        Marker(T0, "opened"),
        Marker(T0 + 1, "step 1 scale requested", "action"),
        Marker(T0 + 86400 * 200, "step 1 scale dry-run", "action"),
    ]
    svg = _svg(signal_chart(_signal(), _points(10), window, markers))
    groups = list(svg.iter(f"{SVG}g"))
    assert len(groups) == 1
    assert groups[0].findtext(f"{SVG}text") == "opened · 1 more"
    assert "step 1 scale requested at 21:00" in (groups[0].findtext(f"{SVG}title") or "")


def test_without_samples_the_recorded_anomalies_are_drawn_or_the_picture_says_so() -> None:
    window = Window(T0 - 1800, T0 + 3600)
    dots = _svg(signal_chart(_signal(), [], window, known=[(T0, 0.5), (T0 + 60, 0.7)]))
    assert dots.find(f"{SVG}polyline") is None
    assert len(dots.findall(f"{SVG}circle[@class='known']")) == 2
    empty = _svg(signal_chart(_signal(peak_value=math.nan), [], window))
    assert empty.findtext(f"{SVG}text[@class='empty']") == "no samples were kept for this signal"


def test_labels_from_outside_are_escaped() -> None:
    hostile = SeriesKey.of("latency", {"model": '</title><script>alert(1)</script>"&'})
    markup = str(signal_chart(_signal(series=hostile), _points(5), Window(T0 - 600, T0 + 600), [Marker(T0, "<b>")]))
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    assert "&lt;b&gt;" in markup
    _svg(markup)  # still well-formed


def test_a_long_series_is_drawn_from_at_most_max_points_and_keeps_its_spikes() -> None:
    points = _points(20_000, step=15.0)
    points[12_345] = (points[12_345][0], 50.0)
    points[777] = (points[777][0], -50.0)
    kept = downsample(points)
    assert len(kept) <= MAX_POINTS
    assert (kept[0], kept[-1]) == (points[0], points[-1])
    assert points[12_345] in kept
    assert points[777] in kept
    assert kept == sorted(kept)
    window = Window(points[0][0], points[-1][0])
    assert len(_polyline(_svg(signal_chart(_signal(), points, window)))) <= MAX_POINTS


def test_downsampling_leaves_short_series_alone_and_drops_values_that_are_not_numbers() -> None:
    points = [(1.0, 1.0), (2.0, math.nan), (3.0, math.inf), (4.0, 2.0)]
    assert downsample(points) == [(1.0, 1.0), (4.0, 2.0)]
    assert downsample([]) == []


def test_the_window_holds_the_signals_samples_and_incident_markers_but_not_late_actions() -> None:
    signals = [_signal(), _signal(first_at=T0 + 3600, last_at=T0 + 4000, quiet_at=T0 + 5000)]
    markers = [Marker(T0 + 6000, "resolved"), Marker(T0 + 86400 * 200, "step 1 dry-run", "action")]
    window = window_of(signals, [_points(10, start=T0 - 1800)], markers)
    assert window.start < T0 - 1800
    assert T0 + 6000 < window.end < T0 + 7000
    narrow = window_of([_signal(first_at=T0, last_at=T0, quiet_at=None)], [], [])
    assert narrow.end - narrow.start >= 600


def test_a_flat_series_still_gets_a_value_axis() -> None:
    flat = [(T0 + i * 60, 3.0) for i in range(10)]
    svg = _svg(signal_chart(_signal(peak_value=3.0), flat, Window(T0, T0 + 600)))
    values = [t.text for t in svg.iter(f"{SVG}text") if t.attrib.get("class") == "axis"]
    assert {"2.7", "3", "3.3"} <= set(values)
    assert {y for _, y in _polyline(svg)} == {30 + 128 / 2}
