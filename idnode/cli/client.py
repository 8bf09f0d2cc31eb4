"""`idnode register`, `resolve` (gRPC) and `hdl` (the Handle/IDIS protocol): a client of a
running node."""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from idnode.cli.common import _auth_metadata, _client_credentials, _tls_arguments

if TYPE_CHECKING:
    from idnode.cli.common import Subcommands


def _grpc_address(args: argparse.Namespace) -> str:
    """The configured node's gRPC address (settings), for commands not given --grpc."""
    from idnode import config

    s = config.load(args.config)
    return f"{s.grpc_host}:{s.grpc_port}"


def cmd_register(args: argparse.Namespace) -> int:
    import uuid

    import grpc

    from idnode.grpc_tls import sync_channel
    from idnode.v1 import registry_pb2 as pb
    from idnode.v1 import registry_pb2_grpc as pb_grpc

    values = []
    for i, item in enumerate(args.value, start=1):
        vtype, sep, data = item.partition("=")
        if not sep:
            print(f"--value {item!r}: expected TYPE=DATA", file=sys.stderr)
            return 2
        values.append(pb.Value(index=i, type=vtype, data=data))
    key = args.idempotency_key or f"cli-{uuid.uuid4()}"
    with sync_channel(args.grpc or _grpc_address(args), _client_credentials(args)) as channel:
        stub = pb_grpc.RegistryStub(channel)
        try:
            resp = stub.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key=key, records=[pb.RecordInput(identifier=args.identifier,
                                                             values=values)]),
                timeout=10, metadata=_auth_metadata(args))
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(f"registered {resp.registered} (idempotency key {key})")
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from idnode.grpc_tls import sync_channel
    from idnode.v1 import registry_pb2 as pb
    from idnode.v1 import registry_pb2_grpc as pb_grpc

    with sync_channel(args.grpc or _grpc_address(args), _client_credentials(args)) as channel:
        try:
            record = pb_grpc.RegistryStub(channel).Resolve(
                pb.ResolveRequest(identifier=args.identifier), timeout=10,
                metadata=_auth_metadata(args))
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(record, ensure_ascii=False))
    return 0


def cmd_hdl(args: argparse.Namespace) -> int:
    """`idnode hdl resolve|site`: the node as the Handle/IDIS protocol serves it."""
    import base64

    from idnode.api.handle import codec
    from idnode.api.handle.client import ClientError, call

    server = args.server
    if server is None:
        from idnode import config

        s = config.load(args.config)
        server = f"{s.handle_host}:{s.handle_port}"
    host, _, port = server.rpartition(":")
    if args.hdl_cmd == "site":
        opcode, body = codec.OC_GET_SITE_INFO, codec.str_field(b"/")
    else:
        opcode = codec.OC_RESOLUTION
        body = (codec.str_field(args.identifier.encode()) + codec.int_list(args.index)
                + codec.str_list([t.encode() for t in args.type]))
    try:
        r = asyncio.run(call(host or "127.0.0.1", int(port), opcode, body, udp=args.udp))
    except (OSError, TimeoutError, ClientError, codec.ProtocolError) as exc:
        print(f"error: {server} ({'UDP' if args.udp else 'TCP'}): {exc or type(exc).__name__}",
              file=sys.stderr)
        return 1
    if r.rc != codec.RC_SUCCESS:
        print(f"error: response code {r.rc}: {codec.decode_error(r.body)}", file=sys.stderr)
        return 1
    if opcode == codec.OC_GET_SITE_INFO:
        print(base64.b64encode(r.body).decode())
        return 0
    handle, values = codec.decode_resolution_response(r.body)
    print(f"{handle.decode()}: {len(values)} value(s) over {'UDP' if args.udp else 'TCP'}")
    for v in values:
        try:
            data = v.data.decode("utf-8")
        except UnicodeDecodeError:
            data = "base64:" + base64.b64encode(v.data).decode()
        print(f"{v.index}\t{v.type.decode()}\t{data}")
    return 0


def add_register(sub: Subcommands) -> None:
    r = sub.add_parser("register", help="register one identifier over gRPC")
    r.add_argument("identifier")
    r.add_argument("--value", action="append", default=[], metavar="TYPE=DATA",
                   help="a string value; repeat for more (indexes 1, 2, …)")
    r.add_argument("--idempotency-key")
    r.add_argument("--grpc", help="node gRPC address (default: grpc_host:grpc_port, "
                   "127.0.0.1:50051)")
    r.add_argument("--api-key", help="write key (default $IDNODE_API_KEY)")
    _tls_arguments(r)
    r.set_defaults(func=cmd_register)


def add_hdl(sub: Subcommands) -> None:
    hd = sub.add_parser("hdl", help="ask the node over the Handle/IDIS protocol (TCP or UDP)")
    hds = hd.add_subparsers(dest="hdl_cmd", required=True)
    hr = hds.add_parser("resolve", help="resolve an identifier (its public values)")
    hr.add_argument("identifier")
    hr.add_argument("--index", type=int, action="append", default=[],
                    help="only this value index (repeatable)")
    hr.add_argument("--type", action="append", default=[],
                    help="only this value type; 'product.' also matches its subtypes")
    hs = hds.add_parser("site", help="the node's HS_SITE record (base64)")
    for cmd in (hr, hs):
        cmd.add_argument("--server", help="HOST:PORT (default: handle_host:handle_port, "
                         "127.0.0.1:2641)")
        cmd.add_argument("--udp", action="store_true", help="over UDP (default TCP)")
    hd.set_defaults(func=cmd_hdl)


def add_resolve(sub: Subcommands) -> None:
    v = sub.add_parser("resolve", help="resolve one identifier over gRPC")
    v.add_argument("identifier")
    v.add_argument("--grpc", help="node gRPC address (default: grpc_host:grpc_port, "
                   "127.0.0.1:50051)")
    v.add_argument("--api-key", help="read key, to see private values (default $IDNODE_API_KEY)")
    _tls_arguments(v)
    v.set_defaults(func=cmd_resolve)
