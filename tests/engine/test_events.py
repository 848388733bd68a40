from engine.domain.events import SeriesKey, Severity


def test_series_key_is_independent_of_label_order() -> None:
    a = SeriesKey.of("m", {"b": "2", "a": "1"})
    b = SeriesKey.of("m", {"a": "1", "b": "2"})
    assert a == b
    assert hash(a) == hash(b)
    assert str(a) == 'm{a="1",b="2"}'


def test_series_key_without_labels_prints_bare_name() -> None:
    assert str(SeriesKey.of("up")) == "up"


def test_severity_is_ordered_and_parsed() -> None:
    assert Severity.parse("critical") > Severity.parse("warning") > Severity.INFO
