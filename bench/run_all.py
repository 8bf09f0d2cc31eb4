"""Runs the benchmark suite in turn, each script in its own process, and prints a summary of
the ratios and verdicts from bench/out/*.json: `make bench`, or

    .venv/bin/python bench/run_all.py [--quick] [--with-extras]

--quick keeps the whole suite under about 5 minutes. --with-extras adds the signing and
traceability-log micro-benchmarks and trace_append.py (the log through the node: ~1 minute
with --quick, ~5 without). `cold_resolve.py --scale` (10 million rows, ~3 GB, ~5
minutes) and `http_hot_vs_commit.py COMMIT` are run by hand.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
CORE = ("cache_hit.py", "http_hot.py", "cold_resolve.py", "register_batch.py")
EXTRAS = ("signing_cost.py", "trace_log.py", "trace_append.py")
#: Seconds any one script may run before it is stopped (its own bound is shorter).
LIMIT = 600


def summary(section: str) -> None:
    rows = []
    for name, keys in (("cache_hit", ("hotcache_get_us", "target_us", "meets_target")),
                       ("http_hot", ("ratio", "target_ratio", "meets_ratio")),
                       ("http_hot", ("p99_ms_at_half_peak", "p99_target_ms", "meets_p99")),
                       ("cold_resolve", ("grpc_batch_ratio", "target_ratio", "meets_target_grpc")),
                       ("cold_resolve", ("http_ratio", "target_ratio", "meets_target_http")),
                       ("register_batch", ("ratio", "target_ratio", "meets_target"))):
        try:
            doc = json.loads((HERE / "out" / f"{name}.json").read_text())[section]
        except (OSError, KeyError, ValueError):
            continue
        value, target, met = (doc.get(k) for k in keys)
        rows.append((f"{name}.{keys[0]}", value, target, "met" if met else "MISSED"))
    print(f"\nsummary ({section})")
    for row in rows:
        print(f"  {row[0]:<34} {row[1]!s:>8}  target {row[2]!s:<6} {row[3]}")


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--with-extras"]
    scripts = CORE + (EXTRAS if "--with-extras" in sys.argv else ())
    failed = []
    started = time.monotonic()
    for script in scripts:
        print(f"\n== {script} {' '.join(args)}", flush=True)
        t = time.monotonic()
        try:
            code = subprocess.run([sys.executable, str(HERE / script), *args], cwd=HERE, check=False,
                                  timeout=LIMIT).returncode
        except subprocess.TimeoutExpired:
            code = -1
        print(f"== {script}: {'ok' if code == 0 else f'FAILED ({code})'} "
              f"in {time.monotonic() - t:.0f} s", flush=True)
        if code != 0:
            failed.append(script)
    summary("quick" if "--quick" in args else "full")
    print(f"\nsuite: {time.monotonic() - started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
