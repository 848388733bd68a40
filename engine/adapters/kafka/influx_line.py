"""Messages in Influx line protocol (Telegraf's default Kafka output): many lines a message, many fields a line.

::

    cpu,host=web-1,cpu=cpu0 usage_user=12.5,usage_system=3.25 1700000000000000000
    http_requests,route=/api count=1027i,errors=3u,healthy=true,status="ok" 1700000000000000000

Each field of a line is a series named ``<measurement>_<field>`` (``cpu_usage_user``), labelled with the line's tags;
names are sanitised as OTLP's are (``metric_names``). Floats, integers (``i``), unsigned integers (``u``) and
booleans (1 and 0) are taken; string fields carry no measurement and are skipped. Escapes follow the line protocol:
``\\,`` and ``\\ `` in the measurement, ``\\,``, ``\\=`` and ``\\ `` in tag keys, tag values and field keys, ``\\"``
and ``\\\\`` in string fields. Timestamps are nanoseconds since the epoch (Telegraf's default precision), kept to
the microsecond; a line without a timestamp is a fault (the engine runs on event time, not on arrival time).
Blank lines and ``#`` comments are skipped.

A message is taken or refused whole: one line that does not parse, or one series that breaks the label rules,
sends the whole message to the dead-letter topic with the line's number, so that the message can be replayed as it
is once fixed, and no line of it is counted twice.
"""

from __future__ import annotations

import re

from engine.adapters.kafka.schema import InvalidMessageError, MessageLimits, Run, check_sample_count, checked_value
from engine.adapters.metric_names import metric_name, sanitized_labels
from engine.adapters.series_runs import GatheredPoints
from engine.domain.events import SeriesKey
from engine.domain.limits import label_problem, metric_name_problem, quoted

_NS = 1e-9
_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"-?\d+")
_UNSIGNED = re.compile(r"\d+")
_BOOLEANS = {"t": 1.0, "T": 1.0, "true": 1.0, "True": 1.0, "TRUE": 1.0}
_BOOLEANS.update({"f": 0.0, "F": 0.0, "false": 0.0, "False": 0.0, "FALSE": 0.0})
_MEASUREMENT_ESCAPE = re.compile(r"\\([, ])")
_KEY_ESCAPE = re.compile(r"\\([,= ])")
# Integer fields: their suffix, their digits and their range (int64, uint64).
_INTEGER_DIGITS = {"i": (_INTEGER, (-(2**63), 2**63)), "u": (_UNSIGNED, (0, 2**64))}
_MAX_INTEGER_CHARS = 22
# A line's timestamp is an integer of nanoseconds: at most 19 digits and a sign (int64).
_MAX_TIMESTAMP_DIGITS = 20


class _LineError(ValueError):
    pass


def decode_influx_line(value: bytes | None, key: bytes | None, limits: MessageLimits) -> list[Run]:
    """The runs of every field of every line; InvalidMessageError naming the first line at fault."""
    body = checked_value(value, key, limits)
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise InvalidMessageError("malformed", f"line protocol must be UTF-8: {exc}") from exc
    out = GatheredPoints(_NS)
    series: dict[tuple[str, str, str], SeriesKey] = {}
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.strip(" \t\r")
        if not line or line[0] == "#":
            continue
        try:
            measurement, tags, fields, timestamp = _parse(line)
        except _LineError as exc:
            raise InvalidMessageError("schema", f"line {number}: {exc}") from exc
        for field, number_value in fields:
            cache_key = (measurement, tags, field)
            found = series.get(cache_key)
            if found is None:
                found = series[cache_key] = _series(measurement, tags, field, limits, number)
            out.ids.append(out.id_of(found))
            out.times.append(timestamp)
            out.values.append(number_value)
        check_sample_count(len(out))
    runs, _ = out.runs()
    return runs


def _series(measurement: str, tags: str, field: str, limits: MessageLimits, number: int) -> SeriesKey:
    name = metric_name(f"{measurement}_{field}")
    labels = sanitized_labels(_tags(tags))
    problem = metric_name_problem(name, limits.labels) or label_problem(
        labels.items(), limits.labels, count=len(labels)
    )
    if problem is not None:
        raise InvalidMessageError("labels", f"line {number}: {problem.message}")
    return SeriesKey(name, tuple(sorted(labels.items())))


def _parse(line: str) -> tuple[str, str, list[tuple[str, float]], int]:
    """The measurement, the raw tag section (after the measurement's comma), the numeric fields and the time."""
    head_end = _unescaped(line, " ", 0, quotes=False)
    if head_end < 0:
        raise _LineError("expected a measurement, fields and a timestamp separated by spaces")
    head = line[:head_end]
    fields_start = head_end + 1
    fields_end = _unescaped(line, " ", fields_start, quotes=True)
    if fields_end < 0:
        raise _LineError("no timestamp (the engine needs each line's time, in nanoseconds)")
    stamp = line[fields_end + 1 :].strip(" ")
    if not _INTEGER.fullmatch(stamp) or len(stamp) > _MAX_TIMESTAMP_DIGITS:
        raise _LineError(f"timestamp {quoted(stamp)} is not an integer of nanoseconds")
    comma = _unescaped(head, ",", 0, quotes=False)
    measurement = _MEASUREMENT_ESCAPE.sub(r"\1", head if comma < 0 else head[:comma])
    if not measurement:
        raise _LineError("empty measurement")
    tags = "" if comma < 0 else head[comma + 1 :]
    if comma >= 0:
        if not tags:
            raise _LineError("a comma after the measurement and no tag")
        _tags(tags)  # checked here, so that the error names the line
    return measurement, tags, _fields(line[fields_start:fields_end]), int(stamp)


def _tags(section: str) -> list[tuple[str, str]]:
    if not section:
        return []
    pairs = []
    for item in _split(section, ","):
        equals = _unescaped(item, "=", 0, quotes=False)
        if equals <= 0 or equals == len(item) - 1:
            raise _LineError(f"tag {quoted(item)} is not key=value")
        pairs.append((_KEY_ESCAPE.sub(r"\1", item[:equals]), _KEY_ESCAPE.sub(r"\1", item[equals + 1 :])))
    return pairs


def _fields(section: str) -> list[tuple[str, float]]:
    if not section:
        raise _LineError("no fields")
    fields = []
    for item in _split(section, ",", quotes=True):
        equals = _unescaped(item, "=", 0, quotes=False)
        if equals <= 0:
            raise _LineError(f"field {quoted(item)} is not key=value")
        raw = item[equals + 1 :]
        number = _field_value(raw)
        if number is not None:
            fields.append((_KEY_ESCAPE.sub(r"\1", item[:equals]), number))
    return fields


def _field_value(raw: str) -> float | None:
    """A field's value as a number; None for a string field."""
    if raw[:1] == '"':
        if len(raw) < 2 or raw[-1] != '"' or _unescaped(raw[1:-1], '"', 0, quotes=False) >= 0:
            raise _LineError(f"string field {quoted(raw)} is not closed")
        return None
    digits = _INTEGER_DIGITS.get(raw[-1:])
    if digits is not None and digits[0].fullmatch(raw, 0, len(raw) - 1):
        # Checked by length before int() reads it: int64 and uint64 need at most 20 digits and a sign.
        low, high = digits[1]
        number = int(raw[:-1]) if len(raw) <= _MAX_INTEGER_CHARS else high
        if not low <= number < high:
            raise _LineError(f"field value {quoted(raw)} is out of its integer range")
        return float(number)
    boolean = _BOOLEANS.get(raw)
    if boolean is not None:
        return boolean
    if _FLOAT.fullmatch(raw):
        return float(raw)
    raise _LineError(f"field value {quoted(raw)} is not a float, an integer (i, u), a boolean or a string")


def _split(text: str, separator: str, *, quotes: bool = False) -> list[str]:
    """``text`` split on unescaped ``separator`` (outside double quotes when ``quotes``)."""
    if "\\" not in text and (not quotes or '"' not in text):
        return text.split(separator)
    items = []
    start = 0
    while True:
        end = _unescaped(text, separator, start, quotes=quotes)
        if end < 0:
            items.append(text[start:])
            return items
        items.append(text[start:end])
        start = end + 1


def _unescaped(text: str, char: str, start: int, *, quotes: bool) -> int:
    """The index of the first ``char`` at or after ``start`` that no backslash escapes (and, with ``quotes``, that
    is outside a double-quoted string); -1 if none."""
    if "\\" not in text and (not quotes or '"' not in text):
        return text.find(char, start)
    quoted_string = False
    index = start
    length = len(text)
    while index < length:
        current = text[index]
        if current == "\\":
            index += 2
            continue
        if quotes and current == '"':
            quoted_string = not quoted_string
        elif current == char and not quoted_string:
            return index
        index += 1
    if quoted_string:
        raise _LineError("a string field is not closed")
    return -1
