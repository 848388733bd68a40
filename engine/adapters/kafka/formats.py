"""The message formats a sample topic may carry, chosen per topic (``AIOPS_KAFKA_TOPIC_FORMATS``).

=========================== ==================================================================================
``json``                    the engine's own JSON, one series a message, keyed by its series (the default)
``otlp_proto``              an OTLP ``ExportMetricsServiceRequest`` in protobuf (the collector's kafka exporter)
``otlp_json``               the same request in proto3 JSON
``prometheus_adapter_json`` one sample a message, as the Telefonica prometheus-kafka-adapter writes it
``influx_line``             Influx line protocol, many lines a message (Telegraf's kafka output)
=========================== ==================================================================================

Every format yields runs (one series' points each) and raises ``InvalidMessageError`` for a message to dead-letter;
each checks the message's size before parsing, bounds its samples and applies the label rules. Only ``json`` checks
the message key (its key is the series); the other formats carry many series a message and the producer chooses
the key. A format that rates counters (OTLP) keeps state, so each topic gets a decoder of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from engine.adapters.kafka.influx_line import decode_influx_line
from engine.adapters.kafka.prometheus_adapter import decode_prometheus_adapter
from engine.adapters.kafka.schema import (
    InvalidMessageError,
    MessageLimits,
    Run,
    check_sample_count,
    checked_value,
    decode_json_runs,
)
from engine.adapters.otlp.metrics import OtlpDecodeError, OtlpFlattener
from engine.domain.errors import ConfigurationError

MessageDecoder = Callable[[bytes | None, bytes | None, MessageLimits], list[Run]]

JSON = "json"
OTLP_PROTO = "otlp_proto"
OTLP_JSON = "otlp_json"
PROMETHEUS_ADAPTER_JSON = "prometheus_adapter_json"
INFLUX_LINE = "influx_line"
FORMATS = (JSON, OTLP_PROTO, OTLP_JSON, PROMETHEUS_ADAPTER_JSON, INFLUX_LINE)


class OtlpMessages:
    """A decoder of OTLP messages (protobuf or JSON) that keeps the previous point of its topic's counters."""

    def __init__(self, limits: MessageLimits, *, protobuf: bool) -> None:
        self._protobuf = protobuf
        self._flattener = OtlpFlattener(limits.labels)

    def __call__(self, value: bytes | None, key: bytes | None, limits: MessageLimits) -> list[Run]:
        body = checked_value(value, key, limits)
        try:
            # Bounded before flattening: a histogram point becomes four samples at most, a summary one a few more.
            flattened = self._flattener.read(body, protobuf=self._protobuf, check_points=check_sample_count)
        except OtlpDecodeError as exc:
            raise InvalidMessageError("malformed", str(exc)) from exc
        check_sample_count(flattened.samples)
        if flattened.refused:
            # A message is taken or refused whole, so that a dead letter can be replayed as it is once fixed.
            problem, _ = flattened.refused[0]
            raise InvalidMessageError(
                "labels", f"{len(flattened.refused)} series break the label rules, first: {problem.message}"
            )
        return flattened.runs


def message_decoder(name: str, limits: MessageLimits) -> MessageDecoder:
    """A decoder of format ``name`` (one of ``FORMATS``) for one topic."""
    if name == JSON:
        return decode_json_runs
    if name == OTLP_PROTO:
        return OtlpMessages(limits, protobuf=True)
    if name == OTLP_JSON:
        return OtlpMessages(limits, protobuf=False)
    if name == PROMETHEUS_ADAPTER_JSON:
        return decode_prometheus_adapter
    if name == INFLUX_LINE:
        return decode_influx_line
    raise ValueError(f"unknown message format {name!r}")


def topic_formats(text: str, topics: Sequence[str]) -> Mapping[str, str]:
    """``AIOPS_KAFKA_TOPIC_FORMATS`` (``topic=format,...``) read against the consumed ``topics``: the format of
    every topic (``json`` where not named); ConfigurationError saying what is wrong in one line."""
    formats = dict.fromkeys(topics, JSON)
    named: set[str] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        topic, equals, name = (piece.strip() for piece in item.partition("="))
        if not equals or not topic or not name:
            raise ConfigurationError(f"AIOPS_KAFKA_TOPIC_FORMATS: expected topic=format, got {item!r}")
        if name not in FORMATS:
            raise ConfigurationError(
                f"AIOPS_KAFKA_TOPIC_FORMATS: unknown format {name!r} for topic {topic!r} (one of {', '.join(FORMATS)})"
            )
        if topic not in formats:
            raise ConfigurationError(
                f"AIOPS_KAFKA_TOPIC_FORMATS: topic {topic!r} is not in AIOPS_KAFKA_TOPICS ({', '.join(topics)})"
            )
        if topic in named:
            raise ConfigurationError(f"AIOPS_KAFKA_TOPIC_FORMATS: topic {topic!r} is given twice")
        named.add(topic)
        formats[topic] = name
    return formats
