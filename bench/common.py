"""Shared bench plumbing: an embedded PostgreSQL of the bench's own, seeding, node processes,
wrk runs, and results written to bench/out/."""
from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from idnode.cache import HotCache
from idnode.cli import local_operator
from idnode.config import Settings
from idnode.embedded import EmbeddedPostgres, free_port
from idnode.node import Core
from idnode.store import migrations

OUT = ROOT / "bench" / "out"
PREFIX = "0.118.8"


@contextmanager
def postgres(durable: bool = True) -> Iterator[str]:
    """$IDNODE_BENCH_DSN, or an embedded server in a temp dir, stopped afterwards."""
    given = os.environ.get("IDNODE_BENCH_DSN")
    if given:
        yield given
        return
    tmp = Path(tempfile.mkdtemp(prefix="idnode-bench-"))
    pg = EmbeddedPostgres(tmp, free_port(), durable=durable,
                          extra_settings={"max_wal_size": "4GB"})
    try:
        yield pg.start()
    finally:
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


async def prepare(dsn: str) -> str:
    """Migrates, onboards an enterprise holding 0.118.8; returns its write key."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.migrate(conn)
        held = await conn.fetchval("SELECT 1 FROM prefixes WHERE prefix = $1", PREFIX)
    finally:
        await conn.close()
    # Signing off: onboarding needs no keyring (and must not create one in the cwd).
    core = await Core.open(Settings(signing_enabled=False), dsn,
                           HotCache(max_entries=1, ttl=1, negative_ttl=1, enabled=False),
                           pool_max=2)
    try:
        op = local_operator()
        t = core.tenancy
        if not held:
            ent = await t.create_enterprise(op, "Bench Co", "91350100M000100Y43")
            await t.allocate_prefix(op, ent.id, PREFIX)
        eid = (await t.enterprises(op))[0].id
        return (await t.issue_key(op, eid, ["read", "write"])).api_key
    finally:
        await core.db.close()


def value_json(i: int) -> str:
    return json.dumps([
        {"index": 1, "type": "product.name", "data": {"format": "string", "value": f"大米 {i}"},
         "ttl": 86400, "timestamp": "2026-11-24T00:00:00.000Z"},
        {"index": 2, "type": "URL", "data": {"format": "string",
                                             "value": f"https://example.com/p/{i:08d}"},
         "ttl": 86400, "timestamp": "2026-11-24T00:00:00.000Z"}], ensure_ascii=False)


GEN = """
INSERT INTO handles (prefix, suffix, vals, version, created_at, updated_at)
SELECT $1, 'BENCH-' || lpad(i::text, 8, '0'),
       jsonb_build_array(
         jsonb_build_object('index', 1, 'type', 'product.name',
                            'data', jsonb_build_object('format', 'string', 'value', '大米 ' || i),
                            'ttl', 86400, 'timestamp', '2026-11-24T00:00:00.000Z'),
         jsonb_build_object('index', 2, 'type', 'URL',
                            'data', jsonb_build_object(
                                'format', 'string',
                                'value', 'https://example.com/p/' || lpad(i::text, 8, '0')),
                            'ttl', 86400, 'timestamp', '2026-11-24T00:00:00.000Z')),
       1, now(), now()
FROM generate_series($2::bigint, $3::bigint - 1) AS i"""

async def seed_record(dsn: str, suffix: str) -> str:
    """Migrates and onboards (`prepare`), then inserts one record PREFIX/suffix by SQL (the
    hot-path benchmarks' record); returns the enterprise's write key."""
    key = await prepare(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO handles (prefix, suffix, vals) VALUES ($1, $2, "
                           "$3::text::jsonb) ON CONFLICT DO NOTHING", PREFIX, suffix,
                           value_json(1))
    finally:
        await conn.close()
    return key


async def generate_rows(dsn: str, lo: int, hi: int, chunk: int = 1_000_000) -> None:
    """Identifiers BENCH-%08d for lo <= i < hi, made by PostgreSQL itself (INSERT … SELECT
    generate_series, two connections: no client work), the shape value_json gives; for
    tables of millions of rows, where COPY from Python would be the bottleneck."""
    async def stream(first: int) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET synchronous_commit = off")
            for start in range(lo + first * chunk, hi, 2 * chunk):
                await conn.execute(GEN, PREFIX, start, min(start + chunk, hi))
        finally:
            await conn.close()

    await asyncio.gather(stream(0), stream(1))


async def table_sizes(dsn: str, parent: str = "handles") -> dict[str, int]:
    """Bytes of a (partitioned) table: heap + TOAST, and its indexes, over all partitions."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT coalesce(sum(pg_table_size(relid)), 0)::bigint,"
            " coalesce(sum(pg_indexes_size(relid)), 0)::bigint,"
            " (SELECT count(*) FROM pg_partition_tree($1::regclass) WHERE isleaf)"
            " FROM pg_partition_tree($1::regclass)", parent)
        return {"table_bytes": row[0], "index_bytes": row[1], "partitions": row[2]}
    finally:
        await conn.close()


async def load_rows(dsn: str, n: int, chunk: int = 200_000, start: int = 0) -> None:
    """Loads n identifiers BENCH-%08d fast (COPY), for read benchmarks."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        for lo in range(start, start + n, chunk):
            hi = min(lo + chunk, start + n)
            await conn.copy_records_to_table(
                "handles", columns=("prefix", "suffix", "vals", "version", "created_at",
                                    "updated_at"),
                records=[(PREFIX, f"BENCH-{i:08d}", value_json(i), 1, now, now)
                         for i in range(lo, hi)])
        await conn.execute("ANALYZE handles")
    finally:
        await conn.close()


class Proc:
    """A process started in its own group and stopped by PID, whatever happens."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 cpu: str | None = None, ready: str = "READY",
                 cleanup: Sequence[Path] = ()) -> None:
        self.cleanup = list(cleanup)
        #: An idnode node's operator (metrics) port, when start_node started it.
        self.metrics = 0
        if cpu is not None and shutil.which("taskset"):
            args = ["taskset", "-c", cpu, *args]
        self.proc = subprocess.Popen(args, env={**os.environ, **(env or {})},
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"{args} exited before it was ready")
            m = re.search(ready, line)
            if m:
                self.match = m
                return
        self.stop()
        raise RuntimeError(f"{args} did not become ready")

    @property
    def pid(self) -> int:
        """The server's PID (taskset execs it, so the same process)."""
        return self.proc.pid

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
        finally:
            for path in self.cleanup:
                shutil.rmtree(path, ignore_errors=True)


def start_node(dsn: str, *, cpu: str | None = "0", env: dict[str, str] | None = None
               ) -> tuple[Proc, int, int]:
    """An `idnode worker` pinned to `cpu`, its data dir (signing keys) in a temp dir; its
    operator listener (/metrics) is `proc.metrics`."""
    data = Path(tempfile.mkdtemp(prefix="idnode-bench-data-"))
    proc = Proc([sys.executable, "-m", "idnode", "worker", "--dsn", dsn, "--http-port", "0",
                 "--grpc-port", "0", "--handle-port", "0", "--metrics-port", "0"],
                env={"IDNODE_LOG_LEVEL": "WARNING", "IDNODE_HTTP_RATE_LIMIT": "1000000000",
                     "IDNODE_GRPC_WRITE_RATE": "0", "IDNODE_GRPC_ADDRESS_WRITE_RATE": "0",
                     "IDNODE_HTTP_RATE_BURST": "1000000000", "IDNODE_DATA_DIR": str(data),
                     **(env or {})},
                cpu=cpu, ready=r"READY http=(\d+) grpc=(\d+) handle=\d+ metrics=(\d+)",
                cleanup=[data])
    proc.metrics = int(proc.match.group(3))
    return proc, int(proc.match.group(1)), int(proc.match.group(2))


def wrk(url: str, *, seconds: int, connections: int = 64, cpu: str | None = "1",
        script: str | None = None, threads: int = 1) -> dict[str, float]:
    """Runs wrk (pinned to `cpu`) and returns req/s and latency percentiles in ms."""
    require_wrk()
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        args[1:1] = ["-s", script]
    if cpu is not None and shutil.which("taskset"):
        args = ["taskset", "-c", cpu, *args]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30,
                         check=False).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk gave no rate:\n{out}")
    rps = float(found.group(1))
    lat = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\b", out)
        if m:
            v = float(m.group(1))
            lat[f"p{pct}_ms"] = v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" \
                else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, **lat, "non_2xx": float(errors.group(1)) if errors else 0.0,
            **({"socket_errors": sock.group(1)} if sock else {})}  # type: ignore[dict-item]


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing; this benchmark needs it: "
                         "apt-get update && apt-get install -y wrk")


def mode() -> str:
    """The JSON section a run writes: quick or full (a script may add its own, e.g. scale)."""
    return "quick" if "--quick" in sys.argv else "full"


def bounded(seconds: int) -> None:
    """Aborts the run (through every finally: servers stopped) if it overruns `seconds`."""
    def expire(_sig: int, _frame: object) -> None:
        raise TimeoutError(f"benchmark exceeded its {seconds} s bound")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)


def table(title: str, rows: Sequence[tuple[str, object]]) -> None:
    """A small two-column table on stdout."""
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}\n" + "-" * (width + 16))
    for key, value in rows:
        if isinstance(value, float):
            value = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        print(f"{key:<{width}}  {value}")


def verdict(ratio: float, target: float, *, lower_is_better: bool = False) -> str:
    met = ratio <= target if lower_is_better else ratio >= target
    return f"{'MET' if met else 'MISSED'} ({ratio:.3f} vs target {'<' if lower_is_better else '≥'} {target})"


def save(name: str, result: dict[str, object], section: str | None = None) -> None:
    """Replaces `section` (default: quick or full) of bench/out/<name>.json, keeping the rest."""
    section = section or mode()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
            doc = {}  # an older flat file: start over
    except (OSError, ValueError):
        doc = {}
    doc[section] = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                    "machine": f"{os.cpu_count()} cores, {platform.machine()}", **result}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"(written: {path.relative_to(ROOT)} [{section}])")


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@contextmanager
def profiled(pid: int, name: str, seconds: float) -> Iterator[None]:
    """With --profile: py-spy samples `pid` (non-blocking) while the block runs, writing
    bench/out/<name>.collapsed (flamegraph.pl / speedscope input) and printing the hottest
    functions (self and inclusive time). Without --profile: does nothing."""
    if "--profile" not in sys.argv:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{name}.collapsed"
    extra = os.environ.get("IDNODE_BENCH_PYSPY_ARGS", "").split()  # e.g. --native
    if "--native" not in extra:  # py-spy cannot unwind native frames without pausing
        extra.append("--nonblocking")
    out.unlink(missing_ok=True)
    proc = subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds) + 1),
                             "-r", "200", "-f", "raw", "-o", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        yield
    finally:
        try:
            proc.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    if out.exists():
        print_profile(out)
    else:
        print(f"py-spy wrote no profile: {proc.stderr.read() if proc.stderr else ''}")


def print_profile(path: Path, top: int = 25) -> None:
    """Self time per source line, and self and inclusive time per function, as shares of
    py-spy's samples (collapsed stacks)."""
    lines: dict[str, int] = {}
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for row in path.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r" \((.*/)?(site-packages/|idnode/)?", " (", f) for f in stack.split(";")]
        lines[frames[-1]] = lines.get(frames[-1], 0) + n
        funcs = [re.sub(r":\d+\)$", ")", f) for f in frames]
        own[funcs[-1]] = own.get(funcs[-1], 0) + n
        for f in set(funcs):
            incl[f] = incl.get(f, 0) + n
    if not total:
        return
    for title, counts in (("self time by line", lines), ("self time by function", own),
                          ("inclusive time by function", incl)):
        print(f"\nprofile ({total} samples, {path.relative_to(ROOT)}): {title}")
        for f, n in sorted(counts.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {100 * n / total:5.1f}%  {f[:150]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postmaster_pid(dsn: str) -> int:
    """The PostgreSQL server's main process (the parent of every backend)."""
    return asyncio.run(postmaster_of(dsn))


async def postmaster_of(dsn: str) -> int:
    """postmaster_pid, from a coroutine."""
    conn = await asyncpg.connect(dsn)
    try:  # read while the backend lives
        pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    finally:
        await conn.close()


def server_cpu_seconds(postmaster: int) -> float:
    """CPU seconds a PostgreSQL server has used so far: the postmaster, its children that have
    exited (cutime, cstime) and those still running (backends, walwriter, checkpointer...)."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15])
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            f = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile: its time is in the postmaster's cutime now
        if int(f[1]) == postmaster:
            total += int(f[11]) + int(f[12])
    return total / tick


@contextmanager
def server_cpu(postmaster: int) -> Iterator[dict[str, float]]:
    """{"cpu_s"} a PostgreSQL server used over the block (all its processes)."""
    out: dict[str, float] = {}
    before = server_cpu_seconds(postmaster)
    try:
        yield out
    finally:
        out["cpu_s"] = server_cpu_seconds(postmaster) - before


def runqueue_seconds(pid: int) -> float:
    """Seconds the process's threads have spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


@contextmanager
def cpu_meter(pid: int | Sequence[int]) -> Iterator[dict[str, float]]:
    """Measures `pid` (or several, summed: a serve's workers) over the block: {"cpu_s",
    "wall_s", "busy", "waiting_cpu"}: busy 1.0 = one core saturated; waiting_cpu = share of the
    wall time its threads were runnable but not running (other processes on its core: the
    noise of a shared machine)."""
    pids = [pid] if isinstance(pid, int) else list(pid)

    def cpu() -> float:
        return sum(cpu_seconds(p) for p in pids)

    def queued() -> float:
        return sum(runqueue_seconds(p) for p in pids)

    out: dict[str, float] = {}
    cpu0, rq0, wall0 = cpu(), queued(), time.monotonic()
    try:
        yield out
    finally:
        out["cpu_s"] = cpu() - cpu0
        out["wall_s"] = time.monotonic() - wall0
        out["busy"] = out["cpu_s"] / out["wall_s"] if out["wall_s"] else 0.0
        out["waiting_cpu"] = (queued() - rq0) / out["wall_s"] if out["wall_s"] else 0.0


async def pg_waits(dsn: str, seconds: float, application: str = "idnode",
                   every: float = 0.02) -> dict[str, float]:
    """What the node's PostgreSQL backends are doing, sampled from pg_stat_activity every
    `every` s: the average number of active backends per state/wait event ("CPU" when
    running, "Client/ClientRead" when waiting for the node inside a transaction)."""
    conn = await asyncpg.connect(dsn)
    counts: dict[str, int] = {}
    samples = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for r in await conn.fetch(
                    "SELECT coalesce(wait_event_type || '/' || wait_event, 'CPU') AS w, state "
                    "FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle' "
                    "AND pid <> pg_backend_pid()", application):
                key = r["w"] if r["state"] == "active" else f"{r['w']} ({r['state']})"
                counts[key] = counts.get(key, 0) + 1
            samples += 1
            await asyncio.sleep(every)
    finally:
        await conn.close()
    return {k: round(v / max(samples, 1), 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
