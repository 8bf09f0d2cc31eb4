"""Hot resolve over HTTP (cache hit) against a bare httptools + uvloop server returning a fixed
300-byte body, each pinned to core 0 with wrk -t1 -c64 on core 1; then p99 at half the peak.

    .venv/bin/python bench/http_hot.py [--quick]
"""
from __future__ import annotations

import sys
import tempfile
import urllib.request
from pathlib import Path

from common import Proc, load_rows, postgres, prepare, run, save, start_node, wrk

TARGET = 0.30


def paced(rate: float, max_delay_ms: int = 4) -> tuple[int, str]:
    """(connections, wrk Lua script) offering about `rate` requests a second: each connection
    waits a whole number of milliseconds (wrk's granularity) between requests."""
    conns = max(1, round(rate * max_delay_ms / 1000))
    delay = max(1, round(1000 * conns / rate))
    path = Path(tempfile.mkstemp(suffix=".lua")[1])
    path.write_text(f"function delay()\n  return {delay}\nend\n")
    return conns, str(path)


def main() -> None:
    seconds = 4 if "--quick" in sys.argv else 10
    from idnode.embedded import free_port

    port = free_port()
    base = Proc([sys.executable, str(Path(__file__).parent / "baseline_http.py"), str(port)],
                cpu="0")
    try:
        url = f"http://127.0.0.1:{port}/api/handles/88.118.8/BENCH-00000001"
        wrk(url, seconds=1)
        baseline = wrk(url, seconds=seconds)
    finally:
        base.stop()

    with postgres(durable=False) as dsn:
        run(prepare(dsn))
        run(load_rows(dsn, 1000))
        node, http, _ = start_node(dsn)
        try:
            url = f"http://127.0.0.1:{http}/api/handles/88.118.8/BENCH-00000001"
            urllib.request.urlopen(url).read()  # fill the cache
            wrk(url, seconds=1)
            hot = wrk(url, seconds=seconds)
            half = hot["rps"] / 2
            conns, script = paced(half)
            at_half = wrk(url, seconds=seconds, connections=conns, script=script)
        finally:
            node.stop()
    ratio = hot["rps"] / baseline["rps"]
    save("http_hot", {
        "baseline_rps": round(baseline["rps"]), "idnode_rps": round(hot["rps"]),
        "ratio": round(ratio, 3), "target_ratio": TARGET, "meets_ratio": ratio >= TARGET,
        "idnode_p99_ms_at_peak": hot.get("p99_ms"),
        "half_peak_offered_rps": round(half), "half_peak_achieved_rps": round(at_half["rps"]),
        "p50_ms_at_half_peak": at_half.get("p50_ms"), "p99_ms_at_half_peak": at_half.get("p99_ms"),
        "meets_p99": (at_half.get("p99_ms") or 1e9) < 5.0,
        "non_2xx": hot["non_2xx"] + at_half["non_2xx"],
    })


if __name__ == "__main__":
    main()
