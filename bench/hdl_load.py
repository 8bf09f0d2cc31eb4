"""Closed-loop resolution load over the Handle/IDIS native protocol (RFC 3652 wire format),
for any server: idnode's handle port, the raw baselines (bench/baseline_handle.py) or the
reference Handle.Net 9.2 server. Standard library only, so it also runs with a plain python3
(e.g. inside a network namespace).

    python3 bench/hdl_load.py --target 127.0.0.1:2641 --proto udp --concurrency 32 --duration 5
    python3 bench/hdl_load.py --target 127.0.0.1:2641 --proto tcp --per-conn 1   # Handle.Net

Keeps `concurrency` requests in flight (UDP: one socket; TCP: that many connections, each
with one request outstanding, kept alive or replaced after --per-conn requests) and reports
req/s, latency percentiles, lost requests and errors. A response counts when its requestId is
outstanding (on TCP: the one just sent on that connection) and its responseCode is
--expect-rc; anything else is counted by kind. The request is byte for byte what hdllib 9.2
sends for a plain resolution; only its requestId changes.
"""
from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import random
import selectors
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

#: major, minor, flags|suggested major, suggested minor, sessionId, requestId, messageId,
#: messageLength (RFC 3652 §2.2.1; hdllib sends 02 0b 02 0b).
ENVELOPE = struct.Struct(">BBBBIIII")
#: opCode, responseCode, opFlags, siteInfoSerial, recursionCount, reserved, expiration,
#: bodyLength (§2.2.2).
HEADER = struct.Struct(">IIIHBBII")
UDP_PAYLOAD = 492          # hdllib's datagram payload: chunk n sits at offset n * 492
OC_RESOLUTION = 1
RC_SUCCESS = 1
HDLLIB_FLAGS = 0x89000000  # AT | CA | PO, what hdllib sets on a plain resolution
MAX_SECONDS = 60           # warmup + duration: every run stops by itself
#: Targets allowed: this machine, and the client namespaces tests/interop.py makes.
ALLOWED = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.213.9.0/24"),
           ipaddress.ip_network("::1/128")]


def lstr(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s


def resolution_request(handle: str, request_id: int = 0, version: tuple[int, int] = (2, 11),
                       expiration: int | None = None) -> bytes:
    """hdllib 9.2's resolution request for `handle` (all values): 71 bytes for 99.999/demo."""
    body = lstr(handle.encode()) + struct.pack(">II", 0, 0)  # no indexes, no types
    exp = int(time.time()) + 43200 if expiration is None else expiration
    message = HEADER.pack(OC_RESOLUTION, 0, HDLLIB_FLAGS, 1, 0, 0, exp, len(body)) + body \
        + struct.pack(">I", 0)  # empty credential
    return ENVELOPE.pack(version[0], version[1], 2, 11, 0, request_id, 0, len(message)) + message


@dataclass
class Result:
    proto: str
    target: str
    concurrency: int
    per_conn: int | None
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    other_rc: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    response_bytes: dict[int, int] = field(default_factory=dict)
    client_cpu: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 3)

        ok = len(lat)
        return {
            "proto": self.proto, "target": self.target, "concurrency": self.concurrency,
            "per_conn": self.per_conn, "seconds": round(self.seconds, 3), "ok": ok,
            "req_per_s": round(ok / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(lat[-1] * 1000, 3) if lat else None,
            "lost": self.lost, "other_rc": self.other_rc, "errors": self.errors,
            "error_count": self.lost + sum(self.other_rc.values()) + sum(self.errors.values()),
            "response_bytes": self.response_bytes,
            "client_cpu_busy": round(self.client_cpu / self.seconds, 2) if self.seconds else 0.0,
        }


class _Clock:
    """Warm-up, then the measured window; `measuring` flips once, `done` ends the run."""

    def __init__(self, warmup: float, duration: float) -> None:
        self.start = time.perf_counter()
        self.t_measure = self.start + warmup
        self.t_end = self.t_measure + duration
        self.measuring = False
        self.t0 = self.cpu0 = 0.0

    def tick(self, now: float, result: Result) -> bool:
        """Advances the phases; True when the run is over."""
        if not self.measuring and now >= self.t_measure:
            self.measuring = True
            self.t0, self.cpu0 = now, _cpu()
        elif self.measuring and now >= self.t_end:
            result.seconds = now - self.t0
            result.client_cpu = _cpu() - self.cpu0
            return True
        return False


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _rc(message: bytes | bytearray) -> int:
    return struct.unpack_from(">I", message, 4)[0] if len(message) >= 8 else -1


def udp_load(host: str, port: int, request: bytes, *, concurrency: int, warmup: float,
             duration: float, timeout: float = 1.0, expect_rc: int = RC_SUCCESS) -> Result:
    """One blocking UDP socket with `concurrency` requests outstanding; replies of several
    datagrams are reassembled (messageId n at n * 492); lost ones expire after `timeout`."""
    res = Result("udp", f"{host}:{port}", concurrency, None)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    sock.connect((host, port))
    sock.settimeout(0.02)
    tpl = bytearray(request)
    pending: dict[int, float] = {}
    partial: dict[int, dict[int, bytes]] = {}
    rid = random.randrange(1, 1 << 30)
    perf, pack_into, unpack_from = time.perf_counter, struct.pack_into, struct.unpack_from
    clock = _Clock(warmup, duration)
    next_tick = clock.start
    lat = res.latencies
    try:
        while True:
            while len(pending) < concurrency:
                rid = rid + 1 if rid < 0x7FFFFFFF else 1
                pack_into(">I", tpl, 8, rid)
                pending[rid] = perf()
                sock.send(tpl)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                data = b""
            except OSError as e:  # e.g. ECONNREFUSED: nothing listens
                if clock.measuring:
                    res.error(f"recv_{errno.errorcode.get(e.errno or 0, type(e).__name__)}")
                data = b""
            now = perf()
            if len(data) >= 20:
                r_rid, msgid, mlen = unpack_from(">III", data, 8)
                t0 = pending.get(r_rid)
                message: bytes | None = None
                if t0 is None:
                    if clock.measuring:
                        res.error("unmatched_requestId")
                elif msgid or mlen > len(data) - 20:
                    parts = partial.setdefault(r_rid, {})
                    parts[msgid] = data[20:]
                    if sum(len(p) for p in parts.values()) >= mlen:
                        message = b"".join(parts[i] for i in sorted(parts))
                        del partial[r_rid]
                else:
                    message = data[20:28]
                if message is not None:
                    del pending[r_rid]
                    if clock.measuring:
                        rc = _rc(message)
                        if rc == expect_rc:
                            lat.append(now - t0)  # type: ignore[operator]
                            res.response_bytes[mlen + 20] = res.response_bytes.get(mlen + 20, 0) + 1
                        else:
                            res.other_rc[rc] = res.other_rc.get(rc, 0) + 1
            elif data and clock.measuring:
                res.error("short_datagram")
            if now >= next_tick:
                next_tick = now + 0.05
                cut = now - timeout
                for r in [r for r, t in pending.items() if t < cut]:
                    del pending[r]
                    partial.pop(r, None)
                    if clock.measuring:
                        res.lost += 1
                if clock.tick(now, res):
                    return res
    finally:
        sock.close()


def tcp_load(host: str, port: int, request: bytes, *, concurrency: int, warmup: float,
             duration: float, per_conn: int = 0, timeout: float = 1.0,
             expect_rc: int = RC_SUCCESS) -> Result:
    """`concurrency` non-blocking connections on epoll, one request outstanding on each; a
    connection is kept alive (per_conn=0) or replaced after `per_conn` requests. The first
    request on a connection is timed from connect()."""
    res = Result("tcp", f"{host}:{port}", concurrency, per_conn)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sel = selectors.DefaultSelector()
    perf = time.perf_counter
    conns: dict[int, dict[str, Any]] = {}
    rid = random.randrange(1, 1 << 30)
    clock = _Clock(warmup, duration)
    tpl = bytearray(request)

    def err(kind: str) -> None:
        if clock.measuring:
            res.error(kind)

    def open_conn() -> bool:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = s.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            s.close()
            err(f"connect_{errno.errorcode.get(code, code)}")
            return False
        c = {"s": s, "t_conn": perf(), "sent": 0, "buf": bytearray(), "rid": 0, "t0": 0.0,
             "connected": False}
        conns[s.fileno()] = c
        sel.register(s, selectors.EVENT_WRITE, c)
        return True

    def close(c: dict[str, Any]) -> None:
        sel.unregister(c["s"])
        del conns[c["s"].fileno()]
        c["s"].close()

    def send(c: dict[str, Any]) -> None:
        nonlocal rid
        rid = rid + 1 if rid < 0x7FFFFFFF else 1
        struct.pack_into(">I", tpl, 8, rid)
        c["rid"], c["buf"] = rid, bytearray()
        c["t0"] = c["t_conn"] if c["sent"] == 0 else perf()
        c["t_sent"] = perf()
        c["sent"] += 1
        try:
            c["s"].send(tpl)  # ~71 bytes: always fits the socket buffer
        except OSError as e:
            err(f"send_{type(e).__name__}")
            close(c)

    try:
        while True:
            while len(conns) < concurrency and open_conn():
                pass
            for key, _ in sel.select(timeout=0.02):
                c = key.data
                if not c["connected"]:
                    code = c["s"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        err(f"connect_{errno.errorcode.get(code, code)}")
                        close(c)
                        continue
                    c["connected"] = True
                    sel.modify(c["s"], selectors.EVENT_READ, c)
                    send(c)
                    continue
                try:
                    chunk = c["s"].recv(65536)
                except OSError as e:
                    err(f"recv_{type(e).__name__}")
                    close(c)
                    continue
                if not chunk:
                    err("EOF")  # Handle.Net closes after each response: use --per-conn 1
                    close(c)
                    continue
                buf = c["buf"]
                buf += chunk
                if len(buf) < 20 or len(buf) < 20 + struct.unpack_from(">I", buf, 16)[0]:
                    continue
                now = perf()
                size = 20 + struct.unpack_from(">I", buf, 16)[0]
                if clock.measuring:
                    if struct.unpack_from(">I", buf, 8)[0] != c["rid"]:
                        res.error("requestId_mismatch")
                    elif (rc := _rc(buf[20:28])) != expect_rc:
                        res.other_rc[rc] = res.other_rc.get(rc, 0) + 1
                    else:
                        res.latencies.append(now - c["t0"])
                        res.response_bytes[size] = res.response_bytes.get(size, 0) + 1
                if len(buf) > size:
                    err("unsolicited_bytes")
                    close(c)
                elif per_conn and c["sent"] >= per_conn:
                    close(c)
                else:
                    send(c)
            now = perf()
            cut = now - timeout
            for c in [c for c in conns.values() if c.get("t_sent", c["t_conn"]) < cut]:
                if clock.measuring:
                    res.lost += 1
                close(c)
            if clock.tick(now, res):
                return res
    finally:
        for c in list(conns.values()):
            close(c)
        sel.close()


def resolve_once(host: str, port: int, handle: str, proto: str = "tcp",
                 timeout: float = 5.0) -> tuple[int, int]:
    """One resolution: (responseCode, response size in bytes with the envelope)."""
    request = resolution_request(handle, request_id=1)
    if proto == "udp":
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                           socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect((host, port))
            s.send(request)
            parts: dict[int, bytes] = {}
            while True:
                data = s.recv(65536)
                msgid, mlen = struct.unpack_from(">II", data, 12)
                parts[msgid] = data[20:]
                if sum(len(p) for p in parts.values()) >= mlen:
                    message = b"".join(parts[i] for i in sorted(parts))
                    return _rc(message), 20 + mlen
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        buf = b""
        while len(buf) < 20 or len(buf) < 20 + struct.unpack_from(">I", buf, 16)[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"{host}:{port} closed the connection mid-response")
            buf += chunk
    return _rc(buf[20:28]), len(buf)


def load(host: str, port: int, proto: str, handle: str, *, concurrency: int = 32,
         duration: float = 5.0, warmup: float = 1.0, per_conn: int = 0, timeout: float = 1.0,
         expect_rc: int = RC_SUCCESS, version: tuple[int, int] = (2, 11)) -> dict[str, Any]:
    """One bounded run against host:port; returns the summary (req_per_s, p50_ms, p99_ms,
    ok, lost, other_rc, errors, error_count, ...)."""
    check_target(host, warmup + duration)
    request = resolution_request(handle, version=version)
    if proto == "udp":
        res = udp_load(host, port, request, concurrency=concurrency, warmup=warmup,
                       duration=duration, timeout=timeout, expect_rc=expect_rc)
    elif proto == "tcp":
        res = tcp_load(host, port, request, concurrency=concurrency, warmup=warmup,
                       duration=duration, per_conn=per_conn, timeout=timeout,
                       expect_rc=expect_rc)
    else:
        raise ValueError(f"proto must be udp or tcp, not {proto!r}")
    return {"handle": handle, "request_bytes": len(request), **res.summary()}


def check_target(host: str, seconds: float) -> None:
    """Load goes only to this machine or our own namespaces, and stops by itself."""
    ip = ipaddress.ip_address(host)
    if not any(ip in net for net in ALLOWED):
        raise ValueError(f"refusing to load {host}: only loopback and 10.213.9.0/24 "
                         "(tests/interop.py's namespaces)")
    if seconds > MAX_SECONDS:
        raise ValueError(f"warmup + duration must be <= {MAX_SECONDS} s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help="HOST:PORT (an IP literal)")
    p.add_argument("--proto", choices=["udp", "tcp"], default="udp")
    p.add_argument("--handle", default="0.118.8/BENCH-000001")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    p.add_argument("--per-conn", type=int, default=0,
                   help="TCP: requests per connection, 0 = keep alive")
    p.add_argument("--timeout", type=float, default=1.0, help="a request is lost after (s)")
    p.add_argument("--expect-rc", type=int, default=RC_SUCCESS)
    p.add_argument("--version", default="2.11", help="envelope version (ID-SDK: 2.3)")
    p.add_argument("--cpu", type=int, help="pin this client to one core")
    a = p.parse_args(argv)
    host, _, port = a.target.rpartition(":")
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    major, minor = (int(x) for x in a.version.split("."))
    try:
        out = load(host.strip("[]"), int(port), a.proto, a.handle, concurrency=a.concurrency,
                   duration=a.duration, warmup=a.warmup, per_conn=a.per_conn,
                   timeout=a.timeout, expect_rc=a.expect_rc, version=(major, minor))
    except ValueError as e:
        sys.exit(str(e))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
