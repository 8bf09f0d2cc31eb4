"""The capacity report: knees of the curves, rates per core, a sizing table, plots.

Used by capacity.py; also rebuilds a report from a saved run:

    .venv/bin/python loadtest/report.py loadtest/out/results.json
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Utilisation a sized deployment runs at, leaving room for bursts and for losing one replica.
TARGET_UTILISATION = 0.6
#: Cores per node replica (deploy/k8s runs one `idnode serve` process per pod, 1 CPU requested).
CORES_PER_REPLICA = 1
MIN_REPLICAS = 2
#: Targets sized when the profile names none (scans/s, registrations/s).
DEFAULT_TARGETS = [
    {"name": "county cooperative", "scans": 200, "registrations": 100},
    {"name": "city, several cooperatives", "scans": 2_000, "registrations": 2_000},
    {"name": "provincial harvest peak", "scans": 20_000, "registrations": 20_000},
    {"name": "provincial peak ×5 (national campaign)", "scans": 100_000,
     "registrations": 50_000},
]


def machine() -> dict[str, object]:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30)
    except ImportError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "memory_gib": mem,
            "python": platform.python_version(), "system": platform.platform()}


@dataclass
class Curve:
    name: str
    unit: str
    steps: list[dict[str, Any]]
    slo: float
    knee: int | None = None          # index of the last step within bounds
    limiter: str = ""
    per_core: float = 0.0            # units a second per node core
    per_core_how: str = ""
    node_cost: float = 0.0           # node core-seconds per unit
    db_cost: float = 0.0             # PostgreSQL core-seconds per unit
    notes: list[str] = field(default_factory=list)

    @property
    def sustainable(self) -> float:
        return self.steps[self.knee]["achieved"] if self.knee is not None else 0.0


def within(step: dict[str, Any], slo: float) -> bool:
    """Latency within its bound and failures under 0.1%."""
    return step["p99"] <= slo and step["failures"] <= 0.001 * max(step["requests"], 1)


def analyse(name: str, unit: str, steps: list[dict[str, Any]], slo: float,
            node_cores_available: float, saturation: dict[str, Any] | None = None) -> Curve:
    """The knee: the step with the highest throughput among those within bounds (beyond it,
    more offered load buys no more throughput, or breaks the latency bound)."""
    c = Curve(name, unit, steps, slo)
    if not steps:
        c.limiter = "not measured"
        return c
    ok = [i for i, s in enumerate(steps) if within(s, slo)]
    if ok:
        c.knee = max(ok, key=lambda i: steps[i]["achieved"])
    nxt = c.knee + 1 if c.knee is not None else 0
    after = steps[nxt] if nxt < len(steps) else None
    knee_step = steps[c.knee] if c.knee is not None else None
    if after is None and knee_step is not None and knee_step["achieved"] >= 0.9 * knee_step["offered"]:
        c.limiter = "none reached: the knee lies beyond the highest step tested"
    else:
        s = after if after is not None else knee_step
        assert s is not None
        why = []
        if s["achieved"] < 0.9 * s["offered"]:
            why.append(f"throughput {s['achieved']:,.0f} of {s['offered']:,.0f} offered")
        if s["p99"] > slo:
            why.append(f"p99 {s['p99']:g} ms > {slo:g} ms")
        if s["failures"] > 0.001 * max(s["requests"], 1):
            why.append(f"{s['failures']} failures")
        if s["node_cores"] >= 0.85 * node_cores_available:
            who = f"the node's CPU ({s['node_cores']:.2f} of {node_cores_available:g} cores)"
        elif s["locust_cores"] >= 0.7:
            who = (f"the load generator (locust {s['locust_cores']:.2f} core, sharing its core "
                   f"with PostgreSQL; the node used {s['node_cores']:.2f})")
        elif s["db_cores"] >= 0.7:
            who = f"PostgreSQL ({s['db_cores']:.2f} cores)"
        else:
            who = (f"waiting, not CPU (node {s['node_cores']:.2f}, PostgreSQL "
                   f"{s['db_cores']:.2f} cores): commits and locks")
        c.limiter = f"{who}: {', '.join(why) or 'at ' + format(s['offered'], ',.0f') + ' offered'}"
    ref = knee_step or steps[0]
    if ref["achieved"] > 0:
        c.node_cost = ref["node_cores"] / ref["achieved"]
        c.db_cost = ref["db_cores"] / ref["achieved"]
    if ref["node_cores"] >= 0.85 * node_cores_available:
        c.per_core = ref["achieved"] / max(ref["node_cores"], 1e-9)
        c.per_core_how = "measured: the node's core was saturated at the knee"
    elif c.node_cost > 0:
        c.per_core = 1.0 / c.node_cost
        c.per_core_how = (f"extrapolated from CPU time: {ref['node_cores']:.2f} node core(s) "
                          f"for {ref['achieved']:,.0f} {unit}/s at the knee")
    if saturation and saturation["achieved"] > 0 and saturation["node_cores"] > 0:
        # A saturated node's cost per request is the one a busy deployment pays.
        # PostgreSQL's share stays the locust curve's: wrk cycles through a fixed list, so
        # after one pass it hits only cached codes, where real scans keep missing.
        c.node_cost = saturation["node_cores"] / saturation["achieved"]
        c.per_core = saturation["achieved"] / saturation["node_cores"]
        c.per_core_how = (f"measured at saturation: the same mix driven by wrk, "
                          f"{saturation['achieved']:,.0f} req/s on {saturation['node_cores']:.2f} "
                          f"node core(s), p99 {saturation['p99']:g} ms")
    return c


def sizing(targets: list[dict[str, Any]], scan: Curve, reg: Curve) -> list[dict[str, Any]]:
    rows = []
    for t in targets or DEFAULT_TARGETS:
        scans, regs = float(t.get("scans", 0)), float(t.get("registrations", 0))
        node = (scans * scan.node_cost + regs * reg.node_cost) / TARGET_UTILISATION
        db = (scans * scan.db_cost + regs * reg.db_cost) / TARGET_UTILISATION
        node_cores = max(1, math.ceil(node))
        replicas = max(MIN_REPLICAS, math.ceil(node_cores / CORES_PER_REPLICA))
        rows.append({"name": t.get("name", ""), "scans": scans, "registrations": regs,
                     "node_cores": node_cores, "replicas": replicas,
                     "db_cores": max(2, math.ceil(db))})
    return rows


def bench_figures() -> dict[str, tuple[float, str]]:
    """Single-core figures from bench/out (same machine) to compare with, if present."""
    out: dict[str, tuple[float, str]] = {}
    d = ROOT / "bench" / "out"

    def get(name: str, key: str) -> tuple[float, str] | None:
        """The figure from the script's full run, else its quick one (bench/out files hold
        one section per mode)."""
        try:
            data = json.loads((d / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None
        for section in ("full", "quick"):
            found = data.get(section)
            if isinstance(found, dict) and key in found:
                return float(found[key]), f"{section}, {found.get('date', '')}"
        return None

    for label, name, key in (("hot", "http_hot", "idnode_rps"),
                             ("cold", "cold_resolve", "http_cold_rps"),
                             ("register", "register_batch", "grpc_register_rows_per_s")):
        v = get(name, key)
        if v:
            out[label] = v
    return out


def plot(path: Path, curve: Curve) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    xs = [s["offered"] for s in curve.steps]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(xs, [s["achieved"] for s in curve.steps], "o-", label="achieved")
    a.plot(xs, xs, "--", color="grey", linewidth=1, label="offered")
    a.set_xlabel(f"offered load ({curve.unit}/s)")
    a.set_ylabel(f"throughput ({curve.unit}/s)")
    a.set_title(f"{curve.name}: throughput")
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        b.plot(xs, [max(s[key], 0.1) for s in curve.steps], style, label=key)
    b.axhline(curve.slo, color="red", linestyle=":", linewidth=1, label=f"p99 bound {curve.slo:g} ms")
    b.set_yscale("log")
    b.set_xlabel(f"offered load ({curve.unit}/s)")
    b.set_ylabel("latency (ms)")
    b.set_title(f"{curve.name}: latency")
    if curve.knee is not None:
        for ax in (a, b):
            ax.axvline(xs[curve.knee], color="orange", linestyle="--", linewidth=1, label="knee")
    for ax in (a, b):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _f(v: float) -> str:
    return f"{v:,.0f}"


def write(out: Path, meta: dict[str, Any], steps: list[Any]) -> Path:
    rows = [s if isinstance(s, dict) else s.__dict__ for s in steps]
    workers = float(meta.get("node_workers", 1))
    # Cores the node could use: one when pinned, else its processes up to the machine's cores.
    node_avail = (1.0 if meta.get("node_cpu") is not None
                  else min(workers, float(meta.get("cpus") or 1)))
    sat = next((r for r in rows if r["curve"] == "saturation"), None)
    scan = analyse("scans", "req", [r for r in rows if r["curve"] == "scan"],
                   float(meta["slo_scan_p99_ms"]), node_avail, sat)
    reg = analyse("registrations", "records", [r for r in rows if r["curve"] == "register"],
                  float(meta["slo_register_p99_ms"]), node_avail)
    mix = next((r for r in rows if r["curve"] == "mix"), None)
    plots = {name: plot(out / f"{name}.png", c) for name, c in (("scan", scan), ("register", reg))}
    m = meta.get("machine", {})
    L: list[str] = []
    add = L.append
    add("# Capacity report")
    add("")
    add(f"{meta['date']} · profile `{meta['profile']}` · {'quick' if meta['quick'] else 'full'} "
        f"run, {meta['elapsed_s']} s · data set {meta['dataset']:,} identifiers · "
        f"{m.get('cores')} × {m.get('cpu')}, {m.get('memory_gib')} GiB · node: "
        f"{int(workers)} process(es)"
        + (f" pinned to CPU {meta['node_cpu']}, locust to CPU {meta['load_cpu']}, "
           "PostgreSQL (durable) unpinned" if meta.get("node_cpu") is not None else ", unpinned"))
    add("")
    add("Produced by `.venv/bin/python loadtest/capacity.py"
        + (" --quick" if meta["quick"] else "") + "`; how to read it: `docs/CAPACITY.md`.")
    add("")
    add("## Summary")
    add("")
    add("| curve | sustainable (knee) | what limited it | node CPU per unit | "
        "rate per node core | PostgreSQL CPU per unit |")
    add("|---|---|---|---|---|---|")
    for c in (scan, reg):
        add(f"| {c.name} | {_f(c.sustainable)} {c.unit}/s | {c.limiter} | "
            f"{c.node_cost * 1e6:.1f} µs | **{_f(c.per_core)} {c.unit}/s** ({c.per_core_how}) | "
            f"{c.db_cost * 1e6:.1f} µs |")
    add("")
    add(f"The knee is the step with the highest throughput among those whose p99 is within its "
        f"bound (scans {scan.slo:g} ms, registrations {reg.slo:g} ms) and whose failures are "
        "under 0.1%: the sustainable rate. A registration is one record (RegisterBatch of "
        f"{meta['batch']} records a call). The rate per node core is what the sizing uses.")
    add("")
    for c, name in ((scan, "scan"), (reg, "register")):
        add(f"## {c.name.capitalize()}")
        add("")
        if plots[name]:
            add(f"![{c.name}]({name}.png)")
            add("")
        add(f"| users | offered {c.unit}/s | achieved {c.unit}/s | calls/s | p50 ms | p95 ms | "
            "p99 ms | failures | node cores | PostgreSQL cores | locust cores |")
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for i, s in enumerate(c.steps):
            mark = " ← knee" if i == c.knee else ""
            add(f"| {s['users']} | {_f(s['offered'])} | {_f(s['achieved'])}{mark} | "
                f"{_f(s['calls_per_s'])} | {s['p50']:g} | {s['p95']:g} | {s['p99']:g} | "
                f"{s['failures']} of {s['requests']:,} | {s['node_cores']:.2f} | "
                f"{s['db_cores']:.2f} | {s['locust_cores']:.2f} |")
        add("")
        if name == "scan" and sat:
            add(f"At saturation (wrk, one connection-heavy client, the same request mix: "
                f"{sat['requests']:,} requests, of which "
                f"{sat['endpoints'][0]['requests'] if sat['endpoints'] else 0:,} non-2xx "
                f"where about {meta.get('unknown_share', 0):.0%} are unknown codes): "
                f"**{_f(sat['achieved'])} req/s**, p50 {sat['p50']:.2f} ms, p90 "
                f"{sat['p95']:.2f} ms, p99 {sat['p99']:.2f} ms; node {sat['node_cores']:.2f} "
                f"cores, PostgreSQL {sat['db_cores']:.2f} cores.")
            add("")
    if mix:
        add(f"## The profile's own mix ({mix['users']} users, {meta['profile']})")
        add("")
        add("| type | name | requests | failures | req/s | p50 ms | p95 ms | p99 ms |")
        add("|---|---|---|---|---|---|---|---|")
        for e in mix["endpoints"]:
            add(f"| {e['type']} | {e['name']} | {e['requests']:,} | {e['failures']} | "
                f"{e['rps']:,.1f} | {e['p50']} | {e['p95']} | {e['p99']} |")
        add(f"| | all | {mix['requests']:,} | {mix['failures']} | {mix['calls_per_s']:,.1f} | "
            f"{mix['p50']:g} | {mix['p95']:g} | {mix['p99']:g} |")
        add("")
        add(f"CPU during the mix: node {mix['node_cores']:.2f}, PostgreSQL "
            f"{mix['db_cores']:.2f}, locust {mix['locust_cores']:.2f} cores.")
        add("")
    add("## Errors")
    add("")
    kinds: dict[str, int] = {}
    for r in rows:
        for k, v in r.get("failure_kinds", {}).items():
            kinds[f"{r['curve']} · {k}"] = kinds.get(f"{r['curve']} · {k}", 0) + v
    if kinds:
        add("| where · what | count |")
        add("|---|---|")
        for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
            add(f"| {k} | {v:,} |")
    else:
        add("None: every request and call in every step succeeded (404 for unknown codes counts "
            "as success, as it is the right answer).")
    add("")
    add("## Sizing")
    add("")
    add(f"Cores for a target load at {TARGET_UTILISATION:.0%} utilisation (room for bursts and "
        f"for losing a replica), from the CPU cost per scan and per registered record above, "
        f"assumed additive. Replicas are pods of {CORES_PER_REPLICA} core running one `idnode "
        f"serve` (deploy/k8s), at least {MIN_REPLICAS}; on hosts, `idnode serve --workers N` "
        "uses N of the node cores. PostgreSQL cores are for the primary "
        "(writes) plus the reads the hot cache misses; put resolution reads on read replicas "
        "and, past one primary, shard by prefix (`docs/SCALING.md`).")
    add("")
    add("| target | scans/s | registrations/s | node cores | replicas | PostgreSQL cores |")
    add("|---|---|---|---|---|---|")
    for r in sizing(meta.get("targets") or [], scan, reg):
        add(f"| {r['name']} | {_f(r['scans'])} | {_f(r['registrations'])} | {r['node_cores']} | "
            f"{r['replicas']} | {r['db_cores']} |")
    add("")
    bench = bench_figures()
    if bench:
        add("## Against the benchmarks (bench/out, same machine)")
        add("")
        add("| figure | this run | bench | ratio | within 20%? |")
        add("|---|---|---|---|---|")
        hot = next((r for r in rows if r["curve"] == "hot"), None)
        pairs = []
        if hot and hot["node_cores"] > 0:
            pairs.append((("hot resolve, one cached identifier, wrk -t1 -c64 (the benchmark's "
                           "method) vs `bench/http_hot.py`"),
                          hot["achieved"] / max(hot["node_cores"], 1.0), "hot"))
        pairs += [("scan mix per node core (at saturation) vs `bench/http_hot.py`",
                   scan.per_core, "hot"),
                  (("registrations per node core vs `bench/register_batch.py` (rows/s, node on "
                    "one core)"), reg.per_core, "register")]
        for label, ours, key in pairs:
            if key in bench and bench[key][0] > 0 and ours > 0:
                ratio = ours / bench[key][0]
                add(f"| {label} | {_f(ours)} | {_f(bench[key][0])} ({bench[key][1]}) | "
                    f"{ratio:.2f} | {'yes' if 0.8 <= ratio <= 1.2 else 'no'} |")
        if "cold" in bench:
            add(f"| (context) cold HTTP resolve, cache off, `bench/cold_resolve.py` | – | "
                f"{_f(bench['cold'][0])} | – | – |")
        add("")
        add("The hot row repeats the benchmark's own request (one cached identifier) under "
            "this harness: it checks the harness against `bench/http_hot.py`. The scan mix is "
            "not that request: half of it is the consumer scan page, which for a product not "
            "viewed in the last few seconds costs three queries (lineage, events, scan counts), "
            "a record signature check and rendering, over a Zipf mix of a large data set with "
            "unknown codes; it is sized on its own measured CPU per request, so its row "
            "is context, not a check. Registrations are compared with "
            "`bench/register_batch.py` (durable, signed, node on one core).")
        add("")
    add("## Method")
    add("")
    add(f"- One locust run per step ({meta['step_seconds']:g} s; every user started within "
        "about a second, statistics reset once all are running). Offered load = users × "
        f"per-user rate ({meta['scan_rate_per_user']:g} scans/s per ScanUser, "
        f"{meta['register_rate_per_user']:g} RegisterBatch calls/s per MesUser). A curve stops "
        "two steps past its knee.")
    add("- CPU: user+system seconds of the node's process(es), of the PostgreSQL server and "
        "all its backends, and of locust, sampled every 0.5 s over the steady part of each step.")
    add("- With one machine for everything, locust competes with PostgreSQL for the second "
        "core; when locust is the limiter, the node was not saturated and its rate per core is "
        "extrapolated from its CPU time per request (which includes per-wakeup overhead that "
        "shrinks under heavier load, so the extrapolation is conservative).")
    add("- Registrations are durable (fsync on), signed, one transaction per batch.")
    add("")
    path = out / "report.md"
    path.write_text("\n".join(L))
    return path


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "loadtest" / "out" / "results.json")
    data = json.loads(src.read_text())
    print(write(src.parent, data["meta"], data["steps"]))
