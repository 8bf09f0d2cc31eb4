"""One command for a capacity run, everything on 127.0.0.1 and bounded in time:

    .venv/bin/python loadtest/capacity.py [--quick] [--profile provincial-harvest-peak]

1. starts an embedded PostgreSQL (durable) in a temporary directory and migrates it;
2. onboards an enterprise holding prefix 0.118.8 and issues it a write key with the `idnode`
   CLI, and loads the data set (0.118.8/LT-%08d) with COPY;
3. starts the node (`python -m idnode worker`), pinned to CPU 0 when there are two or more;
4. runs locust headless (pinned to CPU 1) at rising offered loads, one short run per step:
   scans (ScanUser), then batch registrations (MesUser, RegisterBatch only), stopping a curve
   once it is past its knee, then the profile's own mix for a while;
5. measures the CPU time of the node, of PostgreSQL and of locust during each step;
6. writes loadtest/out/report.md, plots (PNG) and results.json; locust's CSVs in out/csv/.

Every process it starts is stopped by its PID (process group) when it ends, whatever happens.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import psutil
from mix import DATASET_FORMAT, PREFIX, dataset_id, zipf

PY = sys.executable
PROFILES = HERE / "profiles"


# -- processes -------------------------------------------------------------------------------
class Proc:
    """A child in a process group of its own, stopped by its PID (SIGTERM, then SIGKILL)."""

    started: ClassVar[list[Proc]] = []

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None,
                 cpu: str | None = None, log: Path | None = None) -> None:
        if cpu is not None and shutil.which("taskset"):
            args = ["taskset", "-c", cpu, *args]
        self.log = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, env={**os.environ, **(env or {})},
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        Proc.started.append(self)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return -1

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def cli(args: list[str], env: dict[str, str]) -> str:
    """Runs `python -m idnode ARGS` and returns its last line of output."""
    out = subprocess.run([PY, "-m", "idnode", *args], env={**os.environ, **env}, check=False,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"idnode {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1].strip()


def wait_ready(port: int, proc: Proc, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"the node exited ({proc.proc.returncode}); see its log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the node did not become ready")


# -- CPU accounting --------------------------------------------------------------------------
class CpuMeter:
    """Samples the CPU seconds used by groups of processes (each a root PID and its
    descendants, found again at every sample) every `interval` seconds."""

    def __init__(self, roots: dict[str, list[int]], interval: float = 0.5) -> None:
        self.roots = dict(roots)
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._seen: dict[str, dict[int, float]] = {name: {} for name in roots}

    def _cpu(self, name: str, pids: list[int]) -> float:
        # Descendants that exited (PostgreSQL backends) keep the CPU they were last seen with.
        seen = self._seen[name]
        procs = []
        for pid in pids:
            try:
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.Error:
                pass
        for p in procs:
            try:
                t = p.cpu_times()
                seen[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        return sum(seen.values())

    def sample(self) -> None:
        self.samples.append((time.time(), {n: self._cpu(n, pid) for n, pid in self.roots.items()}))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> CpuMeter:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def set_root(self, name: str, pids: list[int]) -> None:
        self.roots[name] = pids
        self._seen.setdefault(name, {})

    def cores(self, name: str, t0: float, t1: float) -> float:
        """Average cores `name` used between t0 and t1 (nearest samples inside the window)."""
        inside = [(t, s.get(name)) for t, s in self.samples if t0 <= t <= t1 and name in s]
        inside = [(t, v) for t, v in inside if v is not None]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


# -- seeding ---------------------------------------------------------------------------------
def seed_values(i: int) -> str:
    return json.dumps([
        {"index": 1, "type": "product.name", "ttl": 86400, "timestamp": "2026-09-28T00:00:00.000Z",
         "data": {"format": "string", "value": "五常大米 稻花香2号"}},
        {"index": 2, "type": "product.origin", "ttl": 86400,
         "timestamp": "2026-09-28T00:00:00.000Z",
         "data": {"format": "string", "value": "黑龙江省五常市民乐乡"}},
        {"index": 3, "type": "batch.harvest_date", "ttl": 86400,
         "timestamp": "2026-09-28T00:00:00.000Z",
         "data": {"format": "string", "value": "2026-09-28"}},
        {"index": 4, "type": "URL", "ttl": 86400, "timestamp": "2026-09-28T00:00:00.000Z",
         "data": {"format": "string", "value": f"https://coop.example.cn/p/{i:08d}"}},
    ], ensure_ascii=False)


async def load_dataset(dsn: str, n: int, chunk: int = 100_000) -> None:
    import asyncpg

    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        for lo in range(0, n, chunk):
            await conn.copy_records_to_table(
                "handles", columns=("prefix", "suffix", "vals", "version", "created_at",
                                    "updated_at"),
                records=[(PREFIX, DATASET_FORMAT.format(i), seed_values(i), 1, now, now)
                         for i in range(lo, min(n, lo + chunk))])
        # Set hint bits and the visibility map, and write the loaded pages out now, so that
        # neither lands on the first steps' latencies.
        await conn.execute("VACUUM (ANALYZE) handles")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def migrate(dsn: str) -> None:
    import asyncpg

    from idnode.store import migrations

    conn = await asyncpg.connect(dsn)
    try:
        await migrations.migrate(conn)
    finally:
        await conn.close()


# -- one step ------------------------------------------------------------------------------
@dataclass
class Step:
    curve: str               # "scan", "register" or "mix"
    users: int
    offered: float           # requests (scan) or records (register) a second
    seconds: float
    achieved: float = 0.0    # same unit as offered, in the steady window
    calls_per_s: float = 0.0
    requests: int = 0
    failures: int = 0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    node_cores: float = 0.0
    db_cores: float = 0.0
    locust_cores: float = 0.0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    endpoints: list[dict[str, object]] = field(default_factory=list)


def read_stats(prefix: Path) -> tuple[dict[str, dict[str, str]], list[dict[str, str]],
                                      list[dict[str, str]]]:
    def rows(path: Path) -> list[dict[str, str]]:
        return list(csv.DictReader(open(path))) if path.exists() else []

    stats = {r["Name"]: r for r in rows(Path(f"{prefix}_stats.csv"))}
    return stats, rows(Path(f"{prefix}_stats_history.csv")), rows(Path(f"{prefix}_failures.csv"))


def run_locust(step: Step, *, base: list[str], extra: list[str], csv_dir: Path,
               meter: CpuMeter, cpu: str | None, records_per_call: int = 1) -> Step:
    name = f"{step.curve}-{step.users:05d}"
    prefix = csv_dir / name
    spawn = max(step.users, 1)  # all users within about a second
    args = [*base, "-u", str(step.users), "-r", str(spawn), "--run-time", f"{int(step.seconds)}s",
            "--csv", str(prefix), "--only-summary", "--reset-stats", "--stop-timeout", "5",
            *extra]
    launched = time.time()
    proc = Proc(args, cpu=cpu, log=csv_dir / f"{name}.log")
    meter.set_root("locust", [proc.pid])
    proc.wait(step.seconds + 60)
    meter.sample()
    stats, history, failures = read_stats(prefix)
    agg = stats.get("Aggregated", {})
    step.requests = int(agg.get("Request Count", 0) or 0)
    step.failures = int(agg.get("Failure Count", 0) or 0)
    for pct, attr in (("50%", "p50"), ("95%", "p95"), ("99%", "p99")):
        v = agg.get(pct, "N/A")
        setattr(step, attr, float(v) if v not in ("", "N/A") else 0.0)
    for r in failures:
        key = f"{r.get('Name')}: {r.get('Error')}"[:160]
        step.failure_kinds[key] = step.failure_kinds.get(key, 0) + int(r.get("Occurrences", 0))
    step.endpoints = [{"type": r["Type"], "name": n, "requests": int(r["Request Count"]),
                       "failures": int(r["Failure Count"]), "rps": float(r["Requests/s"]),
                       "p50": r["50%"], "p95": r["95%"], "p99": r["99%"]}
                      for n, r in stats.items() if n != "Aggregated"]
    # Throughput from the stats reset when the last user started (exact timestamps); the CPU
    # window from the history rows with every user running, a second inside at each end.
    calls = float(agg.get("Requests/s", 0) or 0)
    full = [int(h["Timestamp"]) for h in history
            if h.get("Name") == "Aggregated" and h.get("User Count", "").isdigit()
            and int(h["User Count"]) >= step.users]
    if len(full) >= 4:
        window = (full[0] + 1.0, full[-1] - 1.0)
    else:
        window = (launched + 2.0, time.time() - 1.0)
    step.calls_per_s = calls
    step.achieved = calls * records_per_call
    step.node_cores = meter.cores("node", *window)
    step.db_cores = meter.cores("postgres", *window)
    step.locust_cores = meter.cores("locust", *window)
    print(f"  {step.curve:8s} users={step.users:5d} offered={step.offered:9.0f}/s "
          f"achieved={step.achieved:9.0f}/s p50={step.p50:6.1f} p95={step.p95:6.1f} "
          f"p99={step.p99:6.1f} ms failures={step.failures} cpu node={step.node_cores:.2f} "
          f"db={step.db_cores:.2f} locust={step.locust_cores:.2f}", flush=True)
    return step


def past_knee(step: Step, slo_p99: float) -> bool:
    return (step.achieved < 0.9 * step.offered or step.p99 > slo_p99
            or step.failures > 0.001 * max(step.requests, 1))


def wrk_lua(path: Path, *, dataset: int, zipf_s: float, unknown: float, page: float,
            n: int = 50_000) -> None:
    """A wrk script cycling through n requests drawn like ScanUser's."""
    import random

    from mix import dataset_id, unknown_id, zipf

    random.seed(11)
    z = zipf(dataset, zipf_s)
    lines = ["local paths = {"]
    pages = ["local page = {"]
    for _ in range(n):
        code = unknown_id() if random.random() < unknown else dataset_id(z.draw())
        is_page = random.random() < page
        lines.append(f'"{"/" if is_page else "/api/handles/"}{code}",')
        pages.append("true," if is_page else "false,")
    lines.append("}")
    pages.append("}")
    path.write_text("\n".join(lines + pages + [
        "local html = {Accept = 'text/html'}",
        "local i = 0",
        "request = function()",
        "  i = i % #paths + 1",
        "  return wrk.format('GET', paths[i], page[i] and html or nil)",
        "end", ""]))


def run_wrk(step: Step, *, url: str, script: Path | None, meter: CpuMeter, cpu: str | None,
            connections: int = 64) -> Step:
    """The scan mix at the node's saturation point (wrk keeps the node's core busy where one
    locust process cannot)."""
    import re

    args = ["wrk", "-t1", f"-c{connections}", f"-d{int(step.seconds)}s", "--latency",
            *(["-s", str(script)] if script else []), url]
    if cpu is not None and shutil.which("taskset"):
        args = ["taskset", "-c", cpu, *args]
    t0 = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        text, _ = proc.communicate(timeout=step.seconds + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        text, _ = proc.communicate()
    t1 = time.time()
    meter.sample()
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    step.achieved = step.calls_per_s = float(m.group(1)) if m else 0.0
    step.offered = step.achieved
    step.requests = int(total.group(1)) if total else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    step.endpoints = [{"type": "wrk", "name": "non-2xx (404 for unknown codes expected)",
                       "requests": int(non2xx.group(1)) if non2xx else 0, "failures": 0,
                       "rps": 0.0, "p50": "", "p95": "", "p99": ""}]
    if errors:
        step.failure_kinds["wrk socket errors: " + errors.group(1)] = 1
        step.failures = 1
    for pct, attr in (("50", "p50"), ("90", "p95"), ("99", "p99")):
        mm = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\b", text)
        if mm:
            v = float(mm.group(1))
            setattr(step, attr, v / 1000 if mm.group(2) == "us" else
                    v * 1000 if mm.group(2) == "s" else v)
    step.node_cores = meter.cores("node", t0 + 1, t1 - 0.5)
    step.db_cores = meter.cores("postgres", t0 + 1, t1 - 0.5)
    print(f"  {step.curve:8s} wrk -c{connections}: {step.achieved:9.0f} req/s p50={step.p50:.2f} "
          f"p90={step.p95:.2f} p99={step.p99:.2f} ms cpu node={step.node_cores:.2f} "
          f"db={step.db_cores:.2f}", flush=True)
    return step


# -- main ------------------------------------------------------------------------------------
def load_profile(name: str) -> tuple[Path, dict[str, object], dict[str, object]]:
    path = Path(name) if name.endswith(".toml") else PROFILES / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    return path, data.get("tool", {}).get("locust", {}), data.get("capacity", {})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller run, under two minutes")
    ap.add_argument("--profile", default="provincial-harvest-peak",
                    help="a name in loadtest/profiles/ or a .toml path")
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--dataset-size", type=int, help="default: the profile's (capped when quick)")
    ap.add_argument("--node-workers", type=int, default=1,
                    help="node processes sharing the ports (SO_REUSEPORT)")
    args = ap.parse_args(argv)

    started = time.monotonic()
    profile_path, lopts, cap = load_profile(args.profile)
    quick = args.quick
    dataset = args.dataset_size or int(lopts.get("dataset-size", 100_000))
    if quick:
        dataset = min(dataset, 50_000)
    batch = int(cap.get("register_batch", lopts.get("batch-size", 1000)))
    step_s = float(cap.get("quick_step_seconds" if quick else "step_seconds", 7 if quick else 20))
    scan_rate = float(cap.get("scan_rate_per_user", 20))
    reg_rate = float(cap.get("register_rate_per_user", 2))
    scan_levels = [float(x) for x in cap.get("quick_scan_levels" if quick else "scan_levels",
                                             [1000, 4000, 8000] if quick else
                                             [500, 1000, 2000, 4000, 6000, 8000, 12000])]
    reg_levels = [float(x) for x in cap.get("quick_register_levels" if quick else "register_levels",
                                            [5000, 20000, 40000] if quick else
                                            [2000, 5000, 10000, 20000, 30000, 40000, 60000])]
    mix_seconds = float(cap.get("quick_mix_seconds" if quick else "mix_seconds", 10 if quick else 30))
    slo_scan = float(cap.get("scan_p99_slo_ms", 50))
    slo_reg = float(cap.get("register_p99_slo_ms", 1000))

    out = Path(args.out)
    csv_dir = out / "csv"
    shutil.rmtree(csv_dir, ignore_errors=True)
    csv_dir.mkdir(parents=True)
    ncpu = os.cpu_count() or 1
    node_cpu = "0" if ncpu >= 2 and args.node_workers == 1 else None
    load_cpu = str(ncpu - 1) if ncpu >= 2 and args.node_workers == 1 else None

    from idnode.embedded import EmbeddedPostgres, free_port

    tmp = Path(tempfile.mkdtemp(prefix="idnode-capacity-"))
    pg = EmbeddedPostgres(tmp / "pg", free_port(), durable=True,
                          extra_settings={"max_wal_size": "4GB", "max_connections": "300"})
    nodes: list[Proc] = []
    meter: CpuMeter | None = None
    steps: list[Step] = []
    try:
        print(f"capacity run ({'quick' if quick else 'full'}), profile {profile_path.name}, "
              f"data set {dataset:,} identifiers", flush=True)
        dsn = pg.start()
        asyncio.run(migrate(dsn))
        env = {"IDNODE_DATABASE_URL": dsn, "IDNODE_DATA_DIR": str(tmp / "data"),
               "IDNODE_LOG_LEVEL": "WARNING"}
        ent = cli(["enterprise", "add", "--name", "容量测试合作社", "--uscc", "91350100M000100Y43"],
                  env)
        cli(["prefix", "allocate", "--enterprise", ent, "--prefix", PREFIX], env)
        api_key = cli(["key", "issue", "--enterprise", ent, "--scope", "read,write",
                       "--label", "capacity run"], env)
        t = time.monotonic()
        asyncio.run(load_dataset(dsn, dataset))
        print(f"seeded {dataset:,} identifiers in {time.monotonic() - t:.1f} s", flush=True)

        http, grpc_port = free_port(), free_port()
        # one client address for the whole load: no per-address or per-key limits
        node_env = {**env, "IDNODE_HTTP_RATE_LIMIT": "0", "IDNODE_GRPC_WRITE_RATE": "0",
                    "IDNODE_GRPC_ADDRESS_WRITE_RATE": "0", "IDNODE_HTTP_CONNECTION_RATE": "0",
                    "IDNODE_METRICS_PORT": str(free_port())}
        for i in range(args.node_workers):
            nodes.append(Proc([PY, "-m", "idnode", "worker", "--dsn", dsn, "--worker-id", str(i),
                               "--http-port", str(http), "--grpc-port", str(grpc_port),
                               "--handle-port", str(free_port())],
                              env=node_env, cpu=node_cpu, log=csv_dir / f"node-{i}.log"))
        wait_ready(http, nodes[0])
        postmaster = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
        meter = CpuMeter({"node": [n.pid for n in nodes], "postgres": [postmaster]}).start()

        base = [PY, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--config",
                str(profile_path), "--headless", "--host", f"http://127.0.0.1:{http}",
                "--grpc-host", f"127.0.0.1:{grpc_port}", "--api-key", api_key, "--seed", "off",
                "--dataset-size", str(dataset), "--loglevel", "WARNING"]

        # Warm-up: fills the hot cache the way the scan mix will.
        run_locust(Step("warmup", 50, 50 * scan_rate, 3 if quick else 5), base=base,
                   extra=["--scan-rate", str(scan_rate), "ScanUser"], csv_dir=csv_dir,
                   meter=meter, cpu=load_cpu)
        print("scan curve (ScanUser: JSON API and scan page, Zipf mix, unknown codes)")
        beyond = 0
        for level in scan_levels:
            users = max(1, round(level / scan_rate))
            s = run_locust(Step("scan", users, users * scan_rate, step_s), base=base,
                           extra=["--scan-rate", str(scan_rate), "ScanUser"], csv_dir=csv_dir,
                           meter=meter, cpu=load_cpu)
            steps.append(s)
            beyond += past_knee(s, slo_scan)
            if beyond >= 2:
                break
        if shutil.which("wrk"):
            script = csv_dir / "scan-mix.lua"
            wrk_lua(script, dataset=dataset, zipf_s=float(lopts.get("zipf-s", 1.1)),
                    unknown=float(lopts.get("unknown-share", 0.05)),
                    page=float(lopts.get("page-share", 0.3)))
            print("the scan mix at the node's saturation point (wrk)")
            steps.append(run_wrk(Step("saturation", 64, 0, 4 if quick else 10),
                                 url=f"http://127.0.0.1:{http}", script=script, meter=meter,
                                 cpu=load_cpu))
            # The benchmark's own request (one cached identifier, JSON), to compare with it.
            hot = dataset_id(zipf(dataset, 1.1).draw())
            steps.append(run_wrk(Step("hot", 64, 0, 4 if quick else 8),
                                 url=f"http://127.0.0.1:{http}/api/handles/{hot}", script=None,
                                 meter=meter, cpu=load_cpu))
        print(f"registration curve (MesUser: RegisterBatch of {batch} records)")
        beyond = 0
        for level in reg_levels:
            users = max(1, round(level / (reg_rate * batch)))
            s = run_locust(Step("register", users, users * reg_rate * batch, step_s), base=base,
                           extra=["--mes-rate", str(reg_rate), "--mes-mix", "register:1",
                                  "--batch-size", str(batch), "MesUser"],
                           csv_dir=csv_dir, meter=meter, cpu=load_cpu, records_per_call=batch)
            steps.append(s)
            beyond += past_knee(s, slo_reg)
            if beyond >= 2:
                break
        mix_users = int(lopts.get("users", 50))
        print(f"the profile's own mix ({mix_users} users, {mix_seconds:.0f} s)")
        mix = run_locust(Step("mix", mix_users, 0, mix_seconds), base=base, extra=[],
                         csv_dir=csv_dir, meter=meter, cpu=load_cpu)
        steps.append(mix)
    finally:
        if meter is not None:
            meter.stop()
        for p in reversed(Proc.started):
            p.stop()
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)

    import report

    elapsed = time.monotonic() - started
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "quick": quick,
            "profile": profile_path.name, "dataset": dataset, "batch": batch,
            "cpus": ncpu, "node_cpu": node_cpu, "load_cpu": load_cpu,
            "node_workers": args.node_workers, "step_seconds": step_s,
            "scan_rate_per_user": scan_rate, "register_rate_per_user": reg_rate,
            "slo_scan_p99_ms": slo_scan, "slo_register_p99_ms": slo_reg,
            "targets": cap.get("targets", []), "elapsed_s": round(elapsed),
            "unknown_share": float(lopts.get("unknown-share", 0.05)),
            "page_share": float(lopts.get("page-share", 0.3)),
            "zipf_s": float(lopts.get("zipf-s", 1.1)),
            "machine": report.machine()}
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "steps": [asdict(s) for s in steps]}, indent=2, ensure_ascii=False))
    path = report.write(out, meta, steps)
    print(f"report: {path} ({elapsed:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
