"""The HTTP front door under attack, with raw sockets against a node process whose limits are
set short (1 s timeouts, 40 connections): a pipelining flood, slowloris, each idle state,
connection exhaustion; and the protocol corners an attacker probes (Upgrade, Expect,
malformed input after pipelined requests, repeated headers, undecodable paths).

Each attack asserts its limit functionally (the connection is closed, answered or refused as
docs/OPERATIONS.md "Limits" says), that a normal client gets its answer within 1 s while the
attack goes on, and that the node serves normally afterwards."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import TEMPLATE, Keys, channel, with_database
from tests.helpers import HttpResponse, error_info, eventually, http_get, read_response
from tests.nodeproc import NodeProcess, start_node

TIMEOUT = 1.0
MAX_CONNECTIONS = 40
LIMITS = {"IDNODE_HTTP_HEADER_TIMEOUT": str(TIMEOUT), "IDNODE_HTTP_IDLE_TIMEOUT": str(TIMEOUT),
          "IDNODE_HTTP_BODY_TIMEOUT": str(TIMEOUT), "IDNODE_HTTP_SEND_TIMEOUT": str(TIMEOUT),
          "IDNODE_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
          # The per-address connection rate has its own test (below); off here, where the
          # attacks come from the tests' one address.
          "IDNODE_HTTP_CONNECTION_RATE": "0",
          # Attacks come from one address: the rate limit would make them cheap (429s);
          # these tests measure the connection limits without it.
          "IDNODE_HTTP_RATE_LIMIT": "0"}
RICE = "0.118.8/RICE-1"
DOTTED = "0.118.8/lot/../7"  # registered before the dot-segment rule
#: A normal client's bound while an attack runs.
PROMPT = 1.0


@pytest.fixture(scope="module")
def target(pg_server_dsn: str, template_dsn: str) -> Iterator[NodeProcess]:
    """One node process for the module, on a database of its own holding two records."""
    name = f"idnode_abuse_{os.getpid()}"
    dsn = with_database(pg_server_dsn, name)

    async def create() -> None:
        admin = await asyncpg.connect(pg_server_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(dsn)
        try:
            for ident in (RICE, DOTTED):
                prefix, suffix = ident.split("/", 1)
                await conn.execute(
                    "INSERT INTO handles (prefix, suffix, vals) VALUES ($1, $2, "
                    """'[{"index": 1, "type": "product.name", "data": {"format": "string", """
                    """"value": "rice"}, "ttl": 600, "timestamp": "2026-12-01T00:00:00Z"}]')""",
                    prefix, suffix)
        finally:
            await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(pg_server_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()

    asyncio.run(create())
    proc = start_node(dsn, env=LIMITS, worker_id="abuse")
    try:
        yield proc
    finally:
        code = proc.stop()
        asyncio.run(drop())
        assert code == 0, "".join(proc.log[-20:])


@pytest.fixture
async def node(target: NodeProcess) -> AsyncIterator[NodeProcess]:
    """The module's node, checked healthy (and its own connections gone) after each test."""
    await resolve(target)  # fills the cache: the normal client's answers are cache hits
    yield target
    assert target.proc.poll() is None, "the node died:\n" + "".join(target.log[-20:])
    await eventually(lambda: _connections_at_most(target, 0), timeout=3 * TIMEOUT + 2)
    elapsed = await resolve(target)
    assert elapsed < PROMPT
    await grpc_alive(target)


# -- helpers ----------------------------------------------------------------------------------
async def resolve(node: NodeProcess) -> float:
    """A normal client: a new connection, a cached resolve; returns the seconds it took."""
    started = time.monotonic()
    resp = await asyncio.wait_for(http_get(node.http, f"/api/handles/{RICE}"), 5)
    assert resp.status == 200, resp.body
    return time.monotonic() - started


async def grpc_alive(node: NodeProcess) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.grpc}") as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=PROMPT)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def normal_client_during(node: NodeProcess, attack: asyncio.Task[object],
                               at_least: int = 5) -> list[float]:
    """Resolves every 50 ms while `attack` runs (and at least `at_least` times); each answer
    must come within PROMPT."""
    times: list[float] = []
    while not attack.done() or len(times) < at_least:
        times.append(await resolve(node))
        await asyncio.sleep(0.05)
    await attack
    assert max(times) < PROMPT, f"a normal client waited {max(times):.2f} s during the attack"
    return times


async def metric(node: NodeProcess, name: str, **labels: str) -> float:
    text = (await http_get(node.metrics, "/metrics")).body.decode()
    want = {**labels, "worker": "abuse"}
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))) == want:
            return float(m.group(2))
    return 0.0


async def _connections_at_most(node: NodeProcess, n: int) -> bool:
    return await metric(node, "idnode_http_connections", listener="public") <= n


def rss_mb(node: NodeProcess) -> float:
    with open(f"/proc/{node.proc.pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds(node: NodeProcess) -> int:
    return len(os.listdir(f"/proc/{node.proc.pid}/fd"))


async def connect(node: NodeProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", node.http)


async def closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[float, bytes]:
    """Reads until the server closes; returns how long it took and what came before."""
    started = time.monotonic()
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), limit):
            data += chunk
    except ConnectionResetError:
        pass
    return time.monotonic() - started, data


async def raw_exchange(node: NodeProcess, payload: bytes, wait: float = 3.0) -> bytes:
    """Sends `payload` and returns everything until the server closes (or `wait` passes)."""
    reader, writer = await connect(node)
    writer.write(payload)
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), wait):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        writer.close()
    return data


def statuses(data: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) [A-Z]", data)]


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


# -- floods -----------------------------------------------------------------------------------
async def test_pipelining_flood_of_an_unread_connection_is_bounded_and_cut(node: NodeProcess
                                                                          ) -> None:
    """20,000 pipelined requests in one write, answers never read: the node parses a slice a
    turn, stops reading once the answers back up, and cuts the connection send_timeout
    later; memory stays flat and everyone else is answered at once."""
    rss = rss_mb(node)
    cut = await metric(node, "idnode_http_refused_total", listener="public", why="send_timeout")
    reader, writer = await connect(node)
    writer.write(get(f"/api/handles/{RICE}") * 20_000)  # 0.9 MB

    async def attack() -> None:
        await eventually(lambda: _cut_since(node, cut), timeout=3 * TIMEOUT + 5)

    await normal_client_during(node, asyncio.ensure_future(attack()))
    await grpc_alive(node)
    assert rss_mb(node) - rss < 50
    writer.close()


async def _cut_since(node: NodeProcess, before: float) -> bool:
    return await metric(node, "idnode_http_refused_total", listener="public",
                        why="send_timeout") > before


async def test_pipelining_flood_that_reads_is_answered_in_order(node: NodeProcess) -> None:
    """The same flood from a client that reads: every request answered, in order, while
    other clients are served within PROMPT."""
    n = 5_000
    reader, writer = await connect(node)
    writer.write(b"".join(get(f"/api/handles/0.118.8/FLOOD-{i}") for i in range(n - 1))
                 + get(f"/api/handles/{RICE}", "Connection: close\r\n"))

    async def attack() -> list[HttpResponse]:
        return [await read_response(reader) for _ in range(n)]

    task = asyncio.ensure_future(attack())
    await normal_client_during(node, task)
    answers = task.result()
    writer.close()
    assert [a.status for a in answers] == [404] * (n - 1) + [200]
    assert [a.json()["handle"] for a in answers[:3]] == [f"0.118.8/FLOOD-{i}" for i in range(3)]


async def test_slowloris_headers_one_byte_at_a_time_get_408(node: NodeProcess) -> None:
    """Twenty connections sending their headers a byte every 0.1 s: each is answered 408 and
    closed header_timeout after its first byte, whatever it still sends."""
    request = get(f"/api/handles/{RICE}", "User-Agent: slow\r\n")

    async def loris() -> tuple[float, bytes]:
        reader, writer = await connect(node)
        closed = asyncio.ensure_future(closed_after(reader, TIMEOUT + 3))
        for byte in request:  # ~7 s of bytes unless cut
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)
        took, got = await closed
        writer.close()
        return took, got

    attack = asyncio.ensure_future(asyncio.gather(*(loris() for _ in range(20))))
    await normal_client_during(node, attack)  # type: ignore[arg-type]
    for took, got in attack.result():
        assert statuses(got) == [408], got
        assert b"Connection: close" in got and TIMEOUT * 0.8 < took < TIMEOUT + 2


# -- each idle state --------------------------------------------------------------------------
@pytest.mark.parametrize("state,payload,answer", [
    ("before any byte", b"", None),
    ("mid-headers", b"GET /api/handles/0.118.8/RICE-1 HTTP/1.1\r\nHost: x\r\n", 408),
    ("mid-body", b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", 408),
    ("idle keep-alive", get("/healthz"), 200),
])
async def test_idle_connections_are_closed(node: NodeProcess, state: str, payload: bytes,
                                           answer: int | None) -> None:
    conns = [await connect(node) for _ in range(10)]
    for _, writer in conns:
        writer.write(payload)

    async def attack() -> list[tuple[float, bytes]]:
        return list(await asyncio.gather(*(closed_after(r, TIMEOUT + 3) for r, _ in conns)))

    task = asyncio.ensure_future(attack())
    await normal_client_during(node, task)
    for took, data in task.result():
        assert statuses(data) == ([answer] if answer else []), (state, data)
        assert TIMEOUT * 0.8 < took < TIMEOUT + 2, (state, took)
    for _, writer in conns:
        writer.close()


# -- connections ------------------------------------------------------------------------------
async def test_connections_past_the_cap_get_503_and_descriptors_stay_bounded(
        node: NodeProcess) -> None:
    """An attacker holds every connection the node allows (each kept busy, so no timeout
    frees it) and keeps opening more: the extra ones are answered 503 and closed at once, the
    node's descriptors stay bounded, a client connected before keeps being served, and the
    operator listener and gRPC answer; once the attacker lets go, new clients are served."""
    # The node is shared with the tests before: their connections must be gone first, or
    # one of ours is past the cap (seen on a loaded machine).
    await eventually(lambda: _connections_at_most_and_least(node, 0))
    fds = open_fds(node)
    stop = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list[float]:
        times = []
        while not stop.is_set():
            started = time.monotonic()
            writer.write(get(f"/api/handles/{RICE}"))
            assert (await asyncio.wait_for(read_response(reader), 5)).status == 200
            times.append(time.monotonic() - started)
            await asyncio.sleep(0.2)
        writer.close()
        return times

    keeper = asyncio.ensure_future(hold(*await connect(node)))  # the client there before
    holders = [asyncio.ensure_future(hold(*await connect(node)))
               for _ in range(MAX_CONNECTIONS - 1)]
    try:
        await eventually(lambda: _connections_at_most_and_least(node, MAX_CONNECTIONS))
        refused = [await connect(node) for _ in range(300)]
        worst_fds = open_fds(node)
        for reader, writer in refused:
            # A new client is told at once, without having to send anything.
            took, data = await closed_after(reader, PROMPT)
            assert statuses(data) == [503] and b"Retry-After: 1" in data and took < PROMPT
            writer.close()
        assert worst_fds < fds + MAX_CONNECTIONS + 50, (fds, worst_fds)
        assert (await asyncio.wait_for(http_get(node.metrics, "/healthz"), PROMPT)).status == 200
        await grpc_alive(node)
        assert await metric(node, "idnode_http_refused_total", listener="public",
                            why="connections") >= 300
    finally:
        stop.set()
        kept = await keeper
        await asyncio.gather(*holders)
    assert max(kept) < PROMPT, f"the connected client waited {max(kept):.2f} s"
    await eventually(lambda: _connections_at_most(node, 0))
    assert await resolve(node) < PROMPT


async def _connections_at_most_and_least(node: NodeProcess, n: int) -> bool:
    return await metric(node, "idnode_http_connections", listener="public") == n


def test_listen_backlog_is_the_one_asked_for(target: NodeProcess) -> None:
    if shutil.which("ss") is None:
        raise AssertionError("this test needs ss: apt-get install iproute2")
    out = subprocess.run(["ss", "-Hltn", f"sport = :{target.http}"], capture_output=True,
                         text=True, check=True).stdout.split()
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
    assert int(out[2]) == min(2048, somaxconn), out  # Send-Q of a listener: its backlog


# -- protocol corners -------------------------------------------------------------------------
async def test_answers_to_pipelined_requests_come_before_the_400_of_a_malformed_one(
        node: NodeProcess) -> None:
    data = await raw_exchange(node, get("/readyz") + get(f"/api/handles/{RICE}")
                              + b"BL\x01H / HTTP/1.1\r\n\r\n")
    assert statuses(data) == [200, 200, 400]
    assert data.count(b"Connection: close") == 1 and data.rstrip().endswith(b"}")


async def test_upgrade_is_ignored_and_the_connection_stays_http(node: NodeProcess) -> None:
    data = await raw_exchange(node, get("/healthz", "Connection: Upgrade\r\nUpgrade: websocket\r\n")
                              + get(f"/api/handles/{RICE}", "Connection: close\r\n"))
    assert statuses(data) == [200, 200], data
    assert statuses(await raw_exchange(node, b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"
                                       + get("/healthz"))) == [405]


async def test_expect_100_continue(node: NodeProcess) -> None:
    reader, writer = await connect(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 5\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PROMPT)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    assert (await asyncio.wait_for(read_response(reader), PROMPT)).status == 200
    writer.close()
    assert statuses(await raw_exchange(node, get("/healthz", "Expect: tea\r\n"))) == [417]
    too_big = await raw_exchange(node, b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue"
                                 b"\r\nContent-Length: 2000000\r\n\r\n")
    assert statuses(too_big) == [413]


async def test_reason_phrases(node: NodeProcess) -> None:
    data = await raw_exchange(node, get(f"/api/handles/{RICE}",
                                        "Authorization: Bearer nope\r\nConnection: close\r\n"))
    assert data.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), data[:40]


async def test_repeated_headers_are_joined_cheaply_and_counted(node: NodeProcess) -> None:
    started = time.monotonic()
    many = "".join(f"Accept: text/x{i}\r\n" for i in range(97))  # + Host, Connection
    data = await raw_exchange(node, get("/healthz", many + "Connection: close\r\n"))
    assert statuses(data) == [200] and time.monotonic() - started < PROMPT
    flood = "X: y\r\n" * 5000  # 30 KB of one repeated header, under the byte bound
    data = await raw_exchange(node, get("/healthz", flood))
    assert statuses(data) == [431] and b"more than 100 request header fields" in data


async def test_undecodable_trace_path_is_400(node: NodeProcess) -> None:
    for path in ("/api/trace/0.118.8/X%ff", "/api/handles/0.118.8/X%ff", "/0.118.8/X%ff"):
        resp = await http_get(node.http, path)
        assert resp.status == 400, (path, resp.status)
        assert resp.json()["reason"] == "INVALID_IDENTIFIER"
        assert "not valid UTF-8" in resp.json()["detail"]


async def test_dot_segments_are_refused_in_new_identifiers_only(node: NodeProcess,
                                                                keys: Keys) -> None:
    async with channel(node.grpc, keys.writer) as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="dots", records=[
                    pb.RecordInput(identifier="0.118.8/ok", values=[
                        pb.Value(index=1, type="product.name", data="x")]),
                    pb.RecordInput(identifier="0.118.8/lot/./8", values=[
                        pb.Value(index=1, type="product.name", data="x")])]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info, bad = error_info(err.value)
        assert info.reason == "DOT_SEGMENT" and "'.' path segment" in err.value.details()
        assert bad is not None and bad.field_violations[0].field == "records[1].identifier"
        # One registered before the rule still resolves (its link encodes the '/': labels).
        resp = await http_get(node.http, "/api/handles/0.118.8/lot%2F..%2F7")
        assert resp.status == 200 and resp.json()["handle"] == DOTTED
        got = await stub.Resolve(pb.ResolveRequest(identifier=DOTTED))
        assert got.identifier == DOTTED


async def test_one_address_opening_connections_too_fast_is_cut_at_accept() -> None:
    """http_connection_rate: past its burst an address's new connections are closed before
    any work is spent on them (no transport, no answer); others' are not affected."""
    from idnode.api.http import server as http_server
    from idnode.api.http.problems import problem

    refused: list[str] = []
    server = http_server.HttpServer(
        http_server.Limits(connection_rate=2.0, connection_burst=5.0), refused.append)
    sock = http_server.bind_socket("127.0.0.1", 0, reuse_port=False)
    await server.start(lambda req: http_server.Response(200, b"{}"), lambda _r, _s: None,
                       lambda st, d: problem(st, d), sock)
    port = sock.getsockname()[1]
    try:
        answered = 0
        for _ in range(12):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(get("/", "Connection: close\r\n"))
            try:
                data = await asyncio.wait_for(reader.read(), PROMPT)
            except ConnectionResetError:
                data = b""
            answered += statuses(data) == [200]
            writer.close()
        assert 5 <= answered <= 6 and refused.count("connection_rate") == 12 - answered
    finally:
        await server.drain(0.1)


# -- gRPC and the Handle protocol ---------------------------------------------------------------
async def test_anonymous_batch_flood_is_refused_unparsed_and_starves_no_one(
        node: NodeProcess) -> None:
    """Two anonymous senders of 10,000-record batches, back to back: each call is refused
    before its message is parsed, and a normal client's cached resolve stays prompt."""
    batch = pb.RegisterBatchRequest(idempotency_key="flood", records=[
        pb.RecordInput(identifier=f"0.118.8/FLOOD-{i:06d}", values=[
            pb.Value(index=1, type="product.name", data="x" * 40)]) for i in range(10_000)])
    refused: list[grpc.StatusCode] = []

    async def sender() -> None:
        async with channel(node.grpc, None) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    await stub.RegisterBatch(batch, timeout=5)
                except grpc.aio.AioRpcError as exc:
                    refused.append(exc.code())
                    assert error_info(exc)[0].reason == "CREDENTIAL_REQUIRED"

    attack = asyncio.ensure_future(asyncio.gather(sender(), sender()))
    await normal_client_during(node, attack)  # type: ignore[arg-type]
    assert refused and set(refused) == {grpc.StatusCode.UNAUTHENTICATED}


async def test_handle_protocol_stays_prompt_during_a_udp_flood(node: NodeProcess) -> None:
    """A UDP flood of resolutions at the Handle port (past the response rate limit) leaves
    HTTP clients and Handle clients over TCP answered promptly."""
    import socket

    from tests import hdlwire as w
    req = w.request(1, w.resolution_body(RICE))

    async def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                for _ in range(200):
                    try:
                        sock.sendto(req, ("127.0.0.1", node.handle))
                    except BlockingIOError:
                        pass
                await asyncio.sleep(0.005)

    attack = asyncio.ensure_future(flood())
    await normal_client_during(node, attack)  # type: ignore[arg-type]
    conn = await w.Tcp.open(node.handle)
    try:
        started = time.monotonic()
        assert (await conn.call(req)).rc == 1
        assert time.monotonic() - started < PROMPT
    finally:
        conn.close()
