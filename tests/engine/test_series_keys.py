"""Series keys as text: Prometheus' text exposition form, written and read back exactly, whatever the labels hold."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine.domain.events import SeriesKey, SeriesKeyError, SeriesKeyProblem, is_label_name, is_metric_name

metric_names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]*", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]*", fullmatch=True)
# Any text at all, with the characters that the text form gives a meaning to drawn often.
label_values = st.text(st.one_of(st.sampled_from('"\\\n{},= \t'), st.characters()))
series_keys = st.builds(SeriesKey.of, metric_names, st.dictionaries(label_names, label_values, max_size=6))


@given(series_keys)
@example(SeriesKey.of("m", {"a": 'x"y', "b": "a\\b", "c": "line\nbreak", "d": "", "e": '{x="1",y="2"}'}))
@example(SeriesKey.of("m", {"a": "\\n", "b": '\\"', "c": "\\", "d": "ünïcødé ✓ 🚀"}))
def test_every_key_reads_back_from_its_text(key: SeriesKey) -> None:
    assert SeriesKey.parse(str(key)) == key


@given(series_keys, series_keys)
@example(SeriesKey.of("m", {"x": '1",y="2'}), SeriesKey.of("m", {"x": "1", "y": "2"}))
def test_different_keys_have_different_texts(first: SeriesKey, second: SeriesKey) -> None:
    # Checkpoints and Kafka keys tell series apart by their text.
    assert (str(first) == str(second)) == (first == second)


@given(metric_names, st.dictionaries(label_names, label_values, max_size=6))
def test_the_text_has_no_line_feed_and_one_label_per_pair(name: str, labels: dict[str, str]) -> None:
    text = str(SeriesKey.of(name, labels))
    assert "\n" not in text
    # What Prometheus would read: a name, then (only with labels) a braced set.
    assert text.startswith(name)
    assert text.endswith("}") == bool(labels)


@pytest.mark.parametrize(
    ("labels", "text"),
    [
        ({}, "up"),
        ({"job": "api", "env": "prod"}, 'up{env="prod",job="api"}'),
        ({"path": 'C:\\dir\\"x"'}, 'up{path="C:\\\\dir\\\\\\"x\\""}'),
        ({"msg": "a\nb"}, 'up{msg="a\\nb"}'),
        ({"empty": ""}, 'up{empty=""}'),
        ({"set": "{a=1,b}"}, 'up{set="{a=1,b}"}'),
    ],
)
def test_the_text_escapes_as_prometheus_does(labels: dict[str, str], text: str) -> None:
    assert str(SeriesKey.of("up", labels)) == text


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("up{}", SeriesKey.of("up")),
        ('up{a="1",}', SeriesKey.of("up", {"a": "1"})),
        (' up { a = "1" ,\tb="2" } ', SeriesKey.of("up", {"a": "1", "b": "2"})),
        ('ns:up{a="}"}', SeriesKey.of("ns:up", {"a": "}"})),
    ],
)
def test_blanks_empty_sets_and_a_last_comma_are_read_as_prometheus_reads_them(text: str, key: SeriesKey) -> None:
    assert SeriesKey.parse(text) == key


@pytest.mark.parametrize(
    ("text", "problem", "position"),
    [
        ("", SeriesKeyProblem.METRIC_NAME, 0),
        ("1up", SeriesKeyProblem.METRIC_NAME, 0),
        ('{a="1"}', SeriesKeyProblem.METRIC_NAME, 0),
        ("up-time", SeriesKeyProblem.TRAILING_TEXT, 2),
        ('up{a="1"} 1', SeriesKeyProblem.TRAILING_TEXT, 10),
        ('up{a="1"}}', SeriesKeyProblem.TRAILING_TEXT, 9),
        ('up{a="1"', SeriesKeyProblem.LABEL, 3),
        ("up{a=1}", SeriesKeyProblem.LABEL, 3),
        ('up{1a="1"}', SeriesKeyProblem.LABEL, 3),
        ('up{a:b="1"}', SeriesKeyProblem.LABEL, 3),
        ('up{a="1",,}', SeriesKeyProblem.LABEL, 9),
        ('up{a="1" b="2"}', SeriesKeyProblem.LABEL, 3),
        ('up{a="x"y"}', SeriesKeyProblem.LABEL, 3),
        ('up{a="line\nbreak"}', SeriesKeyProblem.LABEL, 3),
        ('up{a="\\t"}', SeriesKeyProblem.ESCAPE, 6),
        ('up{a="ok",b="x\\u0041"}', SeriesKeyProblem.ESCAPE, 14),
        ('up{a="\\\n"}', SeriesKeyProblem.ESCAPE, 6),
        ('up{a="1",a="2"}', SeriesKeyProblem.DUPLICATE_LABEL, 9),
    ],
)
def test_malformed_text_is_rejected_saying_what_and_where(text: str, problem: SeriesKeyProblem, position: int) -> None:
    with pytest.raises(SeriesKeyError) as raised:
        SeriesKey.parse(text)
    assert (raised.value.problem, raised.value.position, raised.value.text) == (problem, position, text)
    # Callers that only know ValueError (the CLI, playbook test files) still catch it.
    assert isinstance(raised.value, ValueError)


@given(st.text(st.one_of(st.sampled_from('up{a="\\n,} \t'), st.characters())))
def test_any_text_reads_as_a_valid_key_or_is_rejected_as_malformed(text: str) -> None:
    try:
        key = SeriesKey.parse(text)
    except SeriesKeyError:
        return
    assert is_metric_name(key.name)
    assert all(is_label_name(name) for name, _ in key.labels)
    assert SeriesKey.parse(str(key)) == key


@pytest.mark.parametrize(
    ("text", "metric", "label"),
    [
        ("up", True, True),
        ("ns:up", True, False),
        ("_x9", True, True),
        ("9x", False, False),
        ("up\n", False, False),
        ("a-b", False, False),
        ("", False, False),
        ("ü", False, False),
    ],
)
def test_names_follow_prometheus_rules(text: str, metric: bool, label: bool) -> None:
    assert (is_metric_name(text), is_label_name(text)) == (metric, label)


def test_a_key_hashes_as_its_name_and_labels_and_copies_compute_their_own_hash() -> None:
    key = SeriesKey.of("latency", {"pod": "a", "zone": "z"})
    same = SeriesKey("latency", (("pod", "a"), ("zone", "z")))
    assert (hash(key), {key: 1}[same]) == (hash(("latency", key.labels)), 1)
    # A pickled key is read back with the hash of the process that reads it, not a stored one.
    state = key.__reduce__()
    assert state == (SeriesKey, ("latency", key.labels))
    assert pickle.loads(pickle.dumps(key)) == key
    assert hash(copy.deepcopy(key)) == hash(key)
    assert repr(key) == "SeriesKey(name='latency', labels=(('pod', 'a'), ('zone', 'z')))"
