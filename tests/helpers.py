"""Small test helpers: a raw asyncio HTTP/1.1 client, gRPC error details, polling."""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import orjson
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from idnode.v1 import registry_pb2 as pb

T = TypeVar("T")


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def read_response(reader: asyncio.StreamReader, head: bool = False) -> HttpResponse:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = b"" if head or status == 304 else await reader.readexactly(length)
    return HttpResponse(status, headers, body)


async def http_get(port: int, target: str, headers: dict[str, str] | None = None,
                   method: str = "GET") -> HttpResponse:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        await writer.drain()
        return await read_response(reader, head=method == "HEAD")
    finally:
        writer.close()


def error_info(exc: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo,
                                                    error_details_pb2.BadRequest | None]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, "status carries no details"
    info = error_details_pb2.ErrorInfo()
    bad: error_details_pb2.BadRequest | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
    return info, bad


def record_input(identifier: str, **values: str) -> pb.RecordInput:
    vals = values or {"product.name": "test"}
    return pb.RecordInput(identifier=identifier, values=[
        pb.Value(index=i, type=t.replace("__", "."), data=d)
        for i, (t, d) in enumerate(vals.items(), start=1)])


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 10.0,
                     interval: float = 0.02) -> T:
    """Polls `check` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


class BearerAuth(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <key>` to every unary call."""

    def __init__(self, key: str) -> None:
        self.key = key

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = list(details.metadata or ()) + [("authorization", f"Bearer {self.key}")]
        details = details._replace(metadata=metadata)
        return await continuation(details, request)


class DelayProxy:
    """A TCP proxy on loopback that delays every chunk by `delay` seconds (a slow network)."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await asyncio.sleep(self.delay)
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="latin-1") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid …: comm may hold spaces and parentheses
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out
