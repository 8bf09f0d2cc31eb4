"""Whatever a client puts in a request's fields, the node answers with a precise status:
never INTERNAL or UNKNOWN (an exception the edge did not map), and every refusal carries
its details. Requests are generated from the protos' descriptors, so a new field or RPC is
covered without editing this file."""
from __future__ import annotations

import random
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from idnode.node import Node
from idnode.v1 import admin_pb2, registry_pb2, trace_pb2
from tests.conftest import Keys, channel
from tests.helpers import error_info

SERVICES = [registry_pb2.DESCRIPTOR.services_by_name["Registry"],
            trace_pb2.DESCRIPTOR.services_by_name["Trace"],
            admin_pb2.DESCRIPTOR.services_by_name["Admin"]]
METHODS = [(s.full_name, m) for s in SERVICES for m in s.methods]
VARIANTS = 48

STRINGS = ["", "0.118.8/FUZZ-1", "0.118.8", "0.118", "0.118", "0.118.8/" + "长" * 400, "x" * 5000, "\x00",
           "0.118.8/a\x00b", "\u202e\u200b", "../../etc", "%00%ff", "{}", "[1, 2]", "null",
           '{"a": ' * 40, "9" * 40, "-1", "read", "write", "admin", "EdDSA", "active",
           "suspended", "0.118.8/FUZZ-1\n0.118.8/FUZZ-2", " ", "\ud7ff", "0.0/0.0"]
INTS = {FieldDescriptor.TYPE_INT32: (-2**31, -1, 0, 1, 2**31 - 1),
        FieldDescriptor.TYPE_SINT32: (-2**31, -1, 0, 1, 2**31 - 1),
        FieldDescriptor.TYPE_SFIXED32: (-2**31, -1, 0, 1, 2**31 - 1),
        FieldDescriptor.TYPE_UINT32: (0, 1, 2**31, 2**32 - 1),
        FieldDescriptor.TYPE_FIXED32: (0, 1, 2**32 - 1),
        FieldDescriptor.TYPE_INT64: (-2**63, -1, 0, 1, 2**53, 2**63 - 1),
        FieldDescriptor.TYPE_SINT64: (-2**63, -1, 0, 1, 2**63 - 1),
        FieldDescriptor.TYPE_SFIXED64: (-2**63, 0, 2**63 - 1),
        FieldDescriptor.TYPE_UINT64: (0, 1, 2**63, 2**64 - 1),
        FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1)}


def _value(f: FieldDescriptor, rng: random.Random, depth: int) -> Any:
    if f.type == FieldDescriptor.TYPE_STRING:
        return rng.choice(STRINGS)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return rng.choice([b"", b"\x00" * 16, bytes(rng.randrange(256) for _ in range(64)),
                           b"%PDF-1.7" + b"x" * 3000])
    if f.type == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if f.type == FieldDescriptor.TYPE_ENUM:
        return rng.choice([v.number for v in f.enum_type.values] + [99])
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice([0.0, -1.5, 1e300, float("nan")])
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(GetMessageClass(f.message_type), rng, depth + 1)
    return rng.choice(INTS[f.type])


def _message(cls: type[Message], rng: random.Random, depth: int) -> Message:
    msg = cls()
    if msg.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        msg.seconds = rng.choice([0, -1, 1_780_000_000, 253_402_300_800, -2**63, 2**63 - 1])
        msg.nanos = rng.choice([0, 999_999_999, -1, 1_000_000_000])
        return msg
    for f in msg.DESCRIPTOR.fields:
        if depth > 3 or rng.random() < 0.25:
            continue  # left unset
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            continue  # no request has a map today
        if f.is_repeated:
            getattr(msg, f.name).extend(_value(f, rng, depth)
                                        for _ in range(rng.choice([0, 1, 3])))
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(msg, f.name).CopyFrom(_value(f, rng, depth))
        else:
            setattr(msg, f.name, _value(f, rng, depth))
    return msg


def _short(request: Message) -> str:
    text = " ".join(str(request).split())
    return text if len(text) < 400 else text[:400] + " …"


@pytest.mark.parametrize("service, method", METHODS, ids=[m.name for _, m in METHODS])
async def test_no_request_gets_an_internal_error(service: str, method: MethodDescriptor,
                                                node: Node, keys: Keys) -> None:
    # A record the generated requests can name, so they reach past "not found".
    async with channel(node.ports.grpc, keys.writer) as ch:
        await ch.unary_unary("/idnode.v1.Registry/RegisterBatch",
                             request_serializer=lambda m: m.SerializeToString(),
                             response_deserializer=registry_pb2.RegisterBatchResponse.FromString)(
            registry_pb2.RegisterBatchRequest(idempotency_key="fuzz-seed", records=[
                registry_pb2.RecordInput(identifier="0.118.8/FUZZ-1", values=[
                    registry_pb2.Value(index=1, type="URL", data="https://example.com")])]))
    failures = []
    for key in (keys.operator, keys.writer, keys.reader, None):
        failures += await fuzz(node.ports.grpc, key, service, method)
    assert not failures, "\n".join(failures[:5])


async def fuzz(port: int, key: str | None, service: str, method: MethodDescriptor
               ) -> list[str]:
    """VARIANTS generated requests to one RPC with `key` (None: anonymous); what was wrong
    with the answers."""
    rng = random.Random(f"{service}.{method.name}.{(key or 'anonymous')[:16]}")
    request_cls = GetMessageClass(method.input_type)
    response_cls = GetMessageClass(method.output_type)
    failures = []
    async with channel(port, key) as ch:
        call = ch.unary_unary(f"/{service}/{method.name}",
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=response_cls.FromString)
        for _ in range(VARIANTS):
            request = _message(request_cls, rng, 0)
            try:
                await call(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    failures.append(f"{exc.code().name} {exc.details()!r} for "
                                    f"{_short(request)}")
                    continue
                try:
                    error_info(exc)
                except AssertionError:
                    failures.append(f"{exc.code().name} without details for "
                                    f"{_short(request)}")
                except ValueError as bad:  # grpc_status: details of another code
                    failures.append(f"{exc.code().name} {exc.details()!r}: {bad} for "
                                    f"{_short(request)}")
    return failures
