"""Protobuf message types built at run time from a table of their fields, for the wire formats the engine speaks
without a generated ``_pb2`` module (remote_write, OTLP/HTTP's error status).

A table names each message's fields (name, number, type, repeated, message type) as the published ``.proto`` does;
the types go into a descriptor pool of their own: no generated file to regenerate, no protoc at build time, and no
clash with another library that registers the same names in protobuf's default pool. Files are proto3: strings must
be UTF-8, and repeated numbers may come packed or not.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

Field = descriptor_pb2.FieldDescriptorProto
# (name, number, type, repeated, message type name within the package, or ""): one row a field.
FieldRow = tuple[str, int, int, bool, str]


def message_types(package: str, messages: dict[str, list[FieldRow]]) -> dict[str, Any]:
    """The message class of each of ``messages`` (by its name within ``package``); to a type checker they are Any,
    as protobuf builds them at run time."""
    proto = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto3")
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind, repeated, type_name in fields:
            message.field.add(
                name=name,
                number=number,
                type=kind,
                label=Field.LABEL_REPEATED if repeated else Field.LABEL_OPTIONAL,
                type_name=f".{package}.{type_name}" if type_name else None,
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}")) for name in messages}
