"""The HTTP front door under attack: a normal client's latency on a cached resolve while each
attack runs, against its latency with none in the same run, and the node's memory growth.

The node runs with its default limits, pinned to core 0. On core 1: the normal client (one
kept-alive connection, a request every 5 ms, latency counted from when each request was due,
so a stall counts in full) and the attacker (niced, so its own CPU use does not delay the
client's measurements). Attacks, one at a time:

- flood: 4 connections each writing 20,000 pipelined requests at once, never reading;
- flood-reading: the same, reading the answers as fast as they come;
- slowloris: 1,000 connections sending their headers one byte a second;
- idle: 1,500 connections that send nothing;
- connections: 2,500 connections held open (the cap is 2,048), refused ones retried;
- garbage: 50 connections sending malformed requests, reconnecting after each 400;
  then again against a node with the per-address connection rate on (its default).

    .venv/bin/python bench/abuse.py [--quick]

Targets per attack: the client's p99 under 10 ms and under 3x its quiet p99; the node's RSS
growth under 50 MB.
"""
from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import (
    seed_record,
    PREFIX,
    bounded,
    mode,
    postgres,
    run,
    save,
    start_node,
    table,
)

SUFFIX = "BENCH-000001"
PATH = f"/api/handles/{PREFIX}/{SUFFIX}"
REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
P99_TARGET_MS = 10.0
RATIO_TARGET = 3.0
RSS_TARGET_MB = 50.0
INTERVAL = 0.005
ATTACKS = ("flood", "flood-reading", "slowloris", "idle", "connections", "garbage")
HERE = Path(__file__).resolve()


# -- the normal client ------------------------------------------------------------------------
async def client(port: int, seconds: float, lead: float) -> list[float]:
    """Latencies (ms) of a paced, kept-alive client, each from when its request was due. It
    connects at once and starts measuring `lead` seconds later (the attack under way): a
    client connected before the cap is reached keeps its connection; new ones past it are
    refused by design."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(lead)
    out: list[float] = []
    start = time.perf_counter()
    n = 0
    while True:
        due = start + n * INTERVAL
        now = time.perf_counter()
        if due - start > seconds:
            break
        if due > now:
            await asyncio.sleep(due - now)
        writer.write(REQUEST)
        length = 0
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("the node closed the normal client's connection")
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            if line == b"\r\n":
                break
        await reader.readexactly(length)
        out.append((time.perf_counter() - due) * 1000)
        n += 1
    writer.close()
    return out


# -- the attacks ------------------------------------------------------------------------------
async def attack(kind: str, port: int, seconds: float) -> dict[str, int]:
    stop = time.monotonic() + seconds
    stats = {"connections": 0, "refused": 0, "errors": 0}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def open_() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            conn = await asyncio.open_connection("127.0.0.1", port)
            stats["connections"] += 1
            return conn
        except OSError:
            stats["errors"] += 1
            return None

    async def flood(read: bool) -> None:
        payload = REQUEST * 20_000
        while time.monotonic() < stop:
            conn = await open_()
            if conn is None:
                await asyncio.sleep(0.1)
                continue
            reader, writer = conn
            writer.write(payload)
            try:
                while time.monotonic() < stop:
                    if read:
                        if not await asyncio.wait_for(reader.read(1 << 16), stop - time.monotonic()):
                            break
                    else:
                        await asyncio.sleep(0.2)
                        if reader.at_eof():
                            break
            except (TimeoutError, OSError):
                pass
            writer.close()

    async def slowloris() -> None:
        conn = await open_()
        if conn is None:
            return
        _, writer = conn
        for byte in (b"GET " + PATH.encode() + b" HTTP/1.1\r\nHost: bench\r\nX-Slow: "
                     + b"a" * 200):
            if time.monotonic() >= stop or writer.is_closing():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(1.0)
        writer.close()

    async def hold() -> None:
        while time.monotonic() < stop:
            conn = await open_()
            if conn is None:
                await asyncio.sleep(0.2)
                continue
            reader, writer = conn
            try:
                data = await asyncio.wait_for(reader.read(1024), stop - time.monotonic())
                if data.startswith(b"HTTP/1.1 503"):
                    stats["refused"] += 1
                    await asyncio.sleep(0.2)
            except (TimeoutError, OSError):
                pass
            writer.close()

    async def garbage() -> None:
        while time.monotonic() < stop:
            conn = await open_()
            if conn is None:
                await asyncio.sleep(0.1)
                continue
            reader, writer = conn
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBL\x01H / HTTP/1.1\r\n\r\n")
            try:
                await asyncio.wait_for(reader.read(), 2)
            except (TimeoutError, OSError):
                pass
            writer.close()

    jobs = {"flood": lambda: [flood(False) for _ in range(4)],
            "flood-reading": lambda: [flood(True) for _ in range(4)],
            "slowloris": lambda: [slowloris() for _ in range(1000)],
            "idle": lambda: [hold() for _ in range(1500)],
            "connections": lambda: [hold() for _ in range(2500)],
            "garbage": lambda: [garbage() for _ in range(50)]}[kind]()
    await asyncio.gather(*jobs, return_exceptions=True)
    return stats


# -- the run ----------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(args: list[str], nice: int = 0) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(HERE), *args]
    cmd = ["taskset", "-c", "1", *cmd] if nice == 0 else \
        ["taskset", "-c", "1", "nice", "-n", str(nice), *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)


def phase(kind: str | None, port: int, pid: int, seconds: float) -> dict[str, object]:
    """The client alone (kind None) or beside an attack; RSS sampled every 0.1 s."""
    before = rss_mb(pid)
    lead = 1.5 if kind else 0.0
    cl = child(["client", str(port), str(seconds), str(lead)])
    time.sleep(0.2)  # connected
    attacker = child(["attack", kind, str(port), str(seconds + lead + 0.5)], nice=10) \
        if kind else None
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, _ = cl.communicate(timeout=seconds + 60)
        stats = {}
        if attacker is not None:
            a_out, _ = attacker.communicate(timeout=seconds + 60)
            stats = json.loads(a_out or "{}")
    finally:
        done.set()
        for p in (cl, attacker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
    lat = sorted(json.loads(out))
    if not lat:
        raise RuntimeError(f"the normal client got no answers during {kind}")
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    return {"requests": len(lat), "p50_ms": round(pct(0.50), 3), "p99_ms": round(pct(0.99), 3),
            "max_ms": round(lat[-1], 3), "rss_growth_mb": round(peak[0] - before, 1),
            "attacker": stats}


def warm(http: int) -> int:
    """A cached resolve (the first fills the cache); its status."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{http}{PATH}", timeout=5) as r:
        return int(r.status)


def main() -> None:
    seconds = 5.0 if mode() == "quick" else 15.0
    bounded(int((len(ATTACKS) + 1) * (seconds + 15) + 150))
    with postgres(durable=False) as dsn:
        run(seed_record(dsn, SUFFIX))
        # The per-address limits would stop most attacks from one address at the door
        # (cheap 429s, connections closed at accept) and would limit the normal client,
        # which shares the address: off, as behind a load balancer or against attackers
        # with many addresses, so that what is measured is the connection handling. The
        # last phase repeats the churning attack with the per-address connection rate on.
        node, http, _ = start_node(dsn, env={"IDNODE_HTTP_RATE_LIMIT": "0",
                                             "IDNODE_HTTP_CONNECTION_RATE": "0"})
        try:
            warm(http)
            phase(None, http, node.pid, 1.0)  # warm-up
            quiet = phase(None, http, node.pid, seconds)
            results = {kind: phase(kind, http, node.pid, seconds) for kind in ATTACKS}
            alive = warm(http)
        finally:
            node.stop()
        node, http, _ = start_node(dsn, env={"IDNODE_HTTP_RATE_LIMIT": "0"})
        try:
            warm(http)
            results["garbage, connection rate on"] = phase("garbage", http, node.pid, seconds)
            alive = min(alive, warm(http))
        finally:
            node.stop()
    q99 = float(quiet["p99_ms"])  # type: ignore[arg-type]
    rows: list[tuple[str, object]] = [
        ("quiet: p50/p99/max ms",
         f"{quiet['p50_ms']} / {quiet['p99_ms']} / {quiet['max_ms']}")]
    met = True
    for kind, r in results.items():
        p99 = float(r["p99_ms"])  # type: ignore[arg-type]
        ratio = p99 / q99 if q99 else float("inf")
        ok = p99 < P99_TARGET_MS and ratio < RATIO_TARGET and \
            float(r["rss_growth_mb"]) < RSS_TARGET_MB  # type: ignore[arg-type]
        met &= ok
        r.update(p99_ratio=round(ratio, 2), meets=ok)
        rows.append((f"{kind}: p50/p99/max ms, ratio, RSS +MB",
                     f"{r['p50_ms']} / {r['p99_ms']} / {r['max_ms']}, {ratio:.2f}x, "
                     f"{r['rss_growth_mb']}  {'MET' if ok else 'MISSED'}"))
    rows.append(("node answered afterwards", alive == 200))
    table(f"a normal client's cached resolve during each attack ({seconds:g} s each)", rows)
    save("abuse", {
        "method": f"node pinned to core 0, default limits, rate limit off; client and niced "
                  f"attacker on core 1; client: one kept-alive connection, a request every "
                  f"{INTERVAL * 1000:g} ms, latency from when each was due, connected before "
                  f"the attack; {seconds:g} s per attack after 1.5 s of attack",
        "targets": {"p99_ms": P99_TARGET_MS, "p99_ratio": RATIO_TARGET,
                    "rss_growth_mb": RSS_TARGET_MB},
        "quiet": quiet, "attacks": results, "all_met": met, "alive_after": alive == 200})


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        lat = asyncio.run(client(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
        print(json.dumps(lat))
    elif len(sys.argv) > 1 and sys.argv[1] == "attack":
        print(json.dumps(asyncio.run(attack(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))))
    else:
        main()
