"""The protobuf message types of remote_write that the engine reads: 1.0's ``prometheus.WriteRequest`` and 2.0's
``io.prometheus.write.v2.Request``, with only the fields the engine uses.

The types are built here, when the module is imported, from the published wire format (message names, field
numbers and types) into a descriptor pool of their own: no generated ``_pb2`` file to regenerate, no protoc at build
time, and no clash with another library that registers the same names in protobuf's default pool. Fields left out
(1.0's metadata, exemplars and native histograms; 2.0's histograms, exemplars, metadata and created timestamp) are
unknown fields to the parser, skipped as protobuf's rules require. Both files are proto3, as upstream's are: strings
must be UTF-8, and repeated numbers may come packed or not.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_Field = descriptor_pb2.FieldDescriptorProto
# (name, number, type, repeated, message type name): one row a field.
_FieldRow = tuple[str, int, int, bool, str]


def _file(package: str, messages: dict[str, list[_FieldRow]]) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto3")
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind, repeated, type_name in fields:
            message.field.add(
                name=name,
                number=number,
                type=kind,
                label=_Field.LABEL_REPEATED if repeated else _Field.LABEL_OPTIONAL,
                type_name=f".{package}.{type_name}" if type_name else None,
            )
    return proto


_V1 = _file(
    "prometheus",
    {
        "WriteRequest": [("timeseries", 1, _Field.TYPE_MESSAGE, True, "TimeSeries")],
        "TimeSeries": [
            ("labels", 1, _Field.TYPE_MESSAGE, True, "Label"),
            ("samples", 2, _Field.TYPE_MESSAGE, True, "Sample"),
        ],
        "Label": [("name", 1, _Field.TYPE_STRING, False, ""), ("value", 2, _Field.TYPE_STRING, False, "")],
        "Sample": [("value", 1, _Field.TYPE_DOUBLE, False, ""), ("timestamp", 2, _Field.TYPE_INT64, False, "")],
    },
)
_V2 = _file(
    "io.prometheus.write.v2",
    {
        # Fields 1 to 3 are reserved upstream, so that a 1.0 body read as 2.0 is an empty request.
        "Request": [
            ("symbols", 4, _Field.TYPE_STRING, True, ""),
            ("timeseries", 5, _Field.TYPE_MESSAGE, True, "TimeSeries"),
        ],
        "TimeSeries": [
            ("labels_refs", 1, _Field.TYPE_UINT32, True, ""),
            ("samples", 2, _Field.TYPE_MESSAGE, True, "Sample"),
        ],
        "Sample": [("value", 1, _Field.TYPE_DOUBLE, False, ""), ("timestamp", 2, _Field.TYPE_INT64, False, "")],
    },
)

_POOL = descriptor_pool.DescriptorPool()
for _proto in (_V1, _V2):
    _POOL.Add(_proto)


def _message_class(full_name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


# Message classes (protobuf builds them at run time, so to a type checker they are Any).
WriteRequest = _message_class("prometheus.WriteRequest")
TimeSeries = _message_class("prometheus.TimeSeries")
Label = _message_class("prometheus.Label")
Sample = _message_class("prometheus.Sample")
RequestV2 = _message_class("io.prometheus.write.v2.Request")
TimeSeriesV2 = _message_class("io.prometheus.write.v2.TimeSeries")
SampleV2 = _message_class("io.prometheus.write.v2.Sample")
