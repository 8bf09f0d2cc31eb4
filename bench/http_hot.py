"""Hot resolve over HTTP (cache hit) against a bare asyncio + httptools + uvloop server that
returns a fixed 300-byte JSON body (bench/baseline_http.py).

Each server runs alone, pinned to core 0 (`taskset -c 0`); wrk -t1 -c64 runs pinned to core 1.
Then p99 latency at half idnode's peak rate: wrk2 is not packaged for this Debian, so the rate
is paced with a wrk Lua `delay()` (whole milliseconds per connection), calibrated by a short
probe so that the *achieved* rate is half the peak.

    .venv/bin/python bench/http_hot.py [--quick] [--profile]

Targets (issue 16): ≥ 0.75× the bare server, p99 at half the peak < 1 ms (issue 2 had set
0.30× and 5 ms).
"""
from __future__ import annotations

import contextlib
import re
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

from common import (
    seed_record,
    PREFIX,
    Proc,
    bounded,
    cpu_meter,
    mode,
    postgres,
    profiled,
    require_wrk,
    run,
    save,
    start_node,
    table,
    verdict,
    wrk,
)

from idnode.embedded import free_port

TARGET = 0.75
P99_TARGET_MS = 1.0
SUFFIX = "BENCH-000001"
PATH = f"/api/handles/{PREFIX}/{SUFFIX}"
#: Milliseconds each paced connection waits between its requests.
DELAY_MS = 2
#: wrk threads for the paced runs (on the one load core): each fires the requests whose
#: delay() expired at its own millisecond ticks, so more threads, smaller bursts.
PACED_THREADS = 8


def pacing_script() -> str:
    path = Path(tempfile.mkstemp(prefix="idnode-bench-", suffix=".lua")[1])
    path.write_text(f"function delay()\n  return {DELAY_MS}\nend\n")
    return str(path)


def paced(url: str, rate: float, seconds: int) -> dict[str, float]:
    """wrk at about `rate` achieved requests/s: connections each waiting DELAY_MS between
    requests; a 2 s probe measures what one connection achieves, then the count is set."""
    script = pacing_script()
    try:
        conns = max(1, round(rate * DELAY_MS / 1000))
        probe = wrk(url, seconds=2, connections=conns, script=script, threads=PACED_THREADS)
        conns = max(PACED_THREADS, min(1000, round(conns * rate / probe["rps"])))
        result = wrk(url, seconds=seconds, connections=conns, script=script,
                     threads=PACED_THREADS)
        result["connections"] = conns
        return result
    finally:
        Path(script).unlink(missing_ok=True)


def cache_hits(metrics: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
    m = re.search(r"^idnode_cache_hits_total(?:\{[^}]*\})? ([\d.e+]+)", text, re.MULTILINE)
    return int(float(m.group(1))) if m else -1


def rounds_of(url: str, pid: int, seconds: int) -> dict[str, float]:
    """One measured wrk run against the server `pid`, with its CPU."""
    with cpu_meter(pid) as cpu:
        result = wrk(url, seconds=seconds)
    return {**result, "busy": cpu["busy"], "waiting_cpu": cpu["waiting_cpu"],
            "cpu_us": cpu["cpu_s"] / (result["rps"] * cpu["wall_s"]) * 1e6}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(float(r[k]) for r in runs) for k in runs[0]
            if isinstance(runs[0][k], (int, float))}


def main() -> None:
    require_wrk()
    quick = mode() == "quick"
    seconds, rounds = (3, 3) if quick else (5, 5)
    bounded(120 + rounds * 2 * (seconds + 2) + 4 * (seconds + 3))
    port = free_port()
    base = Proc([sys.executable, str(Path(__file__).parent / "baseline_http.py"), str(port)],
                cpu="0")
    try:
        with postgres(durable=False) as dsn:
            run(seed_record(dsn, SUFFIX))
            node, http, _ = start_node(dsn)
            try:
                base_url = f"http://127.0.0.1:{port}{PATH}"
                url = f"http://127.0.0.1:{http}{PATH}"
                with urllib.request.urlopen(url, timeout=5) as resp:  # fills the cache
                    assert resp.status == 200, resp.status
                    size = len(resp.read())
                hits_before = cache_hits(node.metrics)
                wrk(base_url, seconds=1)
                wrk(url, seconds=1)
                # Both servers up (the idle one costs nothing), measured in alternating
                # rounds: the machine's speed drifts by tens of percent within a minute here.
                base_runs, node_runs = [], []
                for i in range(rounds):
                    base_runs.append(rounds_of(base_url, base.pid, seconds))
                    with profiled(node.pid, "http_hot", seconds) if i == rounds - 1 \
                            else contextlib.nullcontext():
                        node_runs.append(rounds_of(url, node.pid, seconds))
                hits = cache_hits(node.metrics) - hits_before
                baseline, hot = median_of(base_runs), median_of(node_runs)
                half = hot["rps"] / 2
                # The paced run's tail is mostly the load generator's (wrk's delay() fires
                # per whole millisecond, so requests arrive in bursts of rate/1000): the
                # bare server is measured at the same rate, the same way, for comparison.
                at_half = paced(url, half, seconds * 2)
                base_at_half = paced(base_url, half, seconds * 2)
            finally:
                node.stop()
    finally:
        base.stop()
    cpu = {"busy": hot["busy"], "waiting_cpu": hot["waiting_cpu"]}
    base_cpu = {"busy": baseline["busy"], "waiting_cpu": baseline["waiting_cpu"]}
    ratio = hot["rps"] / baseline["rps"]
    p99 = at_half.get("p99_ms", float("inf"))
    out = {
        "method": f"wrk -t1 -c64 -d{seconds}s, servers on core 0, wrk on core 1, {rounds} "
                  f"alternating rounds, medians; half-peak: wrk Lua delay() {DELAY_MS} ms per "
                  f"connection, connections calibrated, {2 * seconds} s",
        "rounds": {"baseline_rps": [round(r["rps"]) for r in base_runs],
                   "idnode_rps": [round(r["rps"]) for r in node_runs],
                   "baseline_cpu_us": [round(r["cpu_us"], 2) for r in base_runs],
                   "idnode_cpu_us": [round(r["cpu_us"], 2) for r in node_runs]},
        "baseline_p99_ms_at_idnode_half_peak": base_at_half.get("p99_ms"),
        "baseline_rps": round(baseline["rps"]), "idnode_rps": round(hot["rps"]),
        "idnode_body_bytes": size, "node_cpu_busy": round(cpu["busy"], 2),
        "node_waiting_cpu": round(cpu["waiting_cpu"], 2), "cache_hits_during_runs": hits,
        "baseline_cpu_busy": round(base_cpu["busy"], 2),
        "baseline_waiting_cpu": round(base_cpu["waiting_cpu"], 2),
        "node_cpu_us_per_request": round(hot["cpu_us"], 2),
        "baseline_cpu_us_per_request": round(baseline["cpu_us"], 2),
        "cpu_per_request_ratio": round(baseline["cpu_us"] / hot["cpu_us"], 3),
        "ratio": round(ratio, 3), "target_ratio": TARGET, "meets_ratio": ratio >= TARGET,
        "baseline_p99_ms_at_peak": baseline.get("p99_ms"), "idnode_p99_ms_at_peak": hot.get("p99_ms"),
        "half_peak_target_rps": round(half), "half_peak_achieved_rps": round(at_half["rps"]),
        "half_peak_connections": at_half["connections"],
        "p50_ms_at_half_peak": at_half.get("p50_ms"), "p99_ms_at_half_peak": at_half.get("p99_ms"),
        "p99_target_ms": P99_TARGET_MS, "meets_p99": p99 < P99_TARGET_MS,
        "non_2xx": hot["non_2xx"] + at_half["non_2xx"],
    }
    table("hot resolve over HTTP (cache hit)", [
        ("baseline httptools+uvloop req/s", baseline["rps"]),
        ("idnode req/s", hot["rps"]),
        ("idnode / baseline", verdict(ratio, TARGET)),
        ("node CPU busy / runnable-not-running", f"{cpu['busy']:.2f} / {cpu['waiting_cpu']:.2f}"),
        ("baseline CPU busy / runnable-not-running",
         f"{base_cpu['busy']:.2f} / {base_cpu['waiting_cpu']:.2f}"),
        ("CPU µs per request: node / baseline",
         f"{out['node_cpu_us_per_request']} / {out['baseline_cpu_us_per_request']}"),
        ("idnode p99 at peak (ms)", hot.get("p99_ms", "?")),
        (f"half peak: achieved req/s ({at_half['connections']} conns)", at_half["rps"]),
        ("half peak: p50 / p99 (ms)", f"{at_half.get('p50_ms')} / {at_half.get('p99_ms')}"),
        ("p99 at half peak", verdict(p99, P99_TARGET_MS, lower_is_better=True) + " ms"),
        ("bare server at that rate: p50 / p99 (ms)",
         f"{base_at_half.get('p50_ms')} / {base_at_half.get('p99_ms')}"),
        ("non-2xx responses", int(out["non_2xx"])),  # type: ignore[arg-type]
    ])
    save("http_hot", out)


if __name__ == "__main__":
    main()
