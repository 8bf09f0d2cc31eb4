"""Metrics on prometheus_client: counters and histograms, values read from objects, the
multiprocess mode in which one scrape answers for every worker, and docs/OPERATIONS.md's
reference table kept current."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from idnode import config_doc, metrics_doc
from idnode.metrics import NodeMetrics
from idnode.node import Node
from tests.helpers import http_get


def test_counters_histograms_and_read_values() -> None:
    m = NodeMetrics("w")
    m.http_requests.inc(("handle_api", "200"))
    m.http_requests.inc(("handle_api", "200"), 2)
    m.http_latency.observe(0.003, ("handle_api",))
    hits = {"n": 5}
    m.registry.counted("idnode_cache_hits_total", "Hot cache hits.", lambda: [((), hits["n"])])
    m.registry.gauge("idnode_cache_entries", "Entries.", lambda: [((), 7)])
    text = m.registry.expose().decode()
    assert "# TYPE idnode_http_requests_total counter" in text
    assert 'idnode_http_requests_total{route="handle_api",status="200",worker="w"} 3.0' in text
    assert "# TYPE idnode_http_request_duration_seconds histogram" in text
    assert 'idnode_http_request_duration_seconds_count{route="handle_api",worker="w"} 1.0' in text
    assert "# TYPE idnode_cache_hits_total counter" in text
    assert 'idnode_cache_hits_total{worker="w"} 5.0' in text
    assert 'idnode_cache_entries{worker="w"} 7.0' in text
    hits["n"] = 9  # the object's own count grew: the counter follows
    assert 'idnode_cache_hits_total{worker="w"} 9.0' in m.registry.expose().decode()


def test_buffered_histograms_expose_what_prometheus_client_observes() -> None:
    """Observations are counted in the process and reach prometheus_client at refresh: the
    exposition is the one its own observe() gives, bucket edges included (a value equal to a
    bound is in that bound's bucket)."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from idnode.metrics import LATENCY_BUCKETS

    values = [0.0, 0.0005, 0.0007, 0.001, 0.003, 0.0499, 0.05, 2.5, 3.0, 100.0]
    m = NodeMetrics("w")
    reference = CollectorRegistry()
    plain = Histogram("idnode_http_request_duration_seconds", "HTTP request latency.",
                      ("route", "worker"), buckets=LATENCY_BUCKETS, registry=reference)
    for v in values:
        m.http_latency.observe(v, ("handle_api",))
        plain.labels("handle_api", "w").observe(v)
    ours = [line for line in m.registry.expose().decode().splitlines()
            if line.startswith("idnode_http_request_duration_seconds")]
    theirs = [line for line in generate_latest(reference).decode().splitlines()
              if line.startswith("idnode_http_request_duration_seconds")]
    assert ours == theirs and len(ours) == len(LATENCY_BUCKETS) + 3
    m.http_latency.observe(0.002, ("handle_api",))  # a second flush adds, it does not reset
    assert ('idnode_http_request_duration_seconds_count{route="handle_api",worker="w"} 11.0'
            in m.registry.expose().decode())


def test_held_slots_count_across_refreshes() -> None:
    """The HTTP observer holds its counter and histogram slots for good: each refresh
    empties them in place and what is added after is counted on top."""
    from idnode.api.http.operator import observer
    from idnode.api.http.server import Request
    from idnode.core.stats import Stats

    m = NodeMetrics("w")
    observe = observer(m, Stats())
    req = Request("GET", "/healthz", "", {}, "127.0.0.1", True)
    req.route = "healthz"
    total = 0
    for more in (1, 2, 3):
        for _ in range(more):
            observe(req, 200)
        total += more
        text = m.registry.expose().decode()
        assert f'idnode_http_requests_total{{route="healthz",status="200",worker="w"}} ' \
               f'{total}.0' in text
        assert f'idnode_http_request_duration_seconds_count{{route="healthz",worker="w"}} ' \
               f'{total}.0' in text
        assert m.http_requests.slot(("healthz", "200")) == [0.0]


WORKER = textwrap.dedent("""
    import sys
    from idnode.metrics import NodeMetrics
    m = NodeMetrics(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        m.http_requests.inc(("handle_api", "200"))
        m.http_latency.observe(0.003, ("handle_api",))
    m.registry.gauge("idnode_cache_entries", "Entries.", lambda: [((), 3)])
    m.registry.refresh()
""")
SCRAPE = textwrap.dedent("""
    from idnode.metrics import NodeMetrics
    print(NodeMetrics("scraper").registry.expose().decode())
""")


def test_one_scrape_answers_for_every_worker_process(tmp_path: Path) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for worker, count in (("0", "2"), ("1", "3"), ("1", "4")):
        subprocess.run([sys.executable, "-c", WORKER, worker, count], env=env, check=True,
                       timeout=60)
    text = subprocess.run([sys.executable, "-c", SCRAPE], env=env, check=True, timeout=60,
                          capture_output=True, text=True).stdout
    assert 'idnode_http_requests_total{route="handle_api",status="200",worker="0"} 2.0' in text
    # two processes under one worker label: summed
    assert 'idnode_http_requests_total{route="handle_api",status="200",worker="1"} 7.0' in text
    assert ('idnode_http_request_duration_seconds_bucket{le="0.005",route="handle_api",'
            'worker="1"} 7.0') in text
    assert "idnode_cache_entries" in text


async def test_a_node_exposes_only_documented_metrics(node: Node) -> None:
    text = (await http_get(node.ports.metrics, "/metrics")).body.decode()
    documented = {name for name, *_ in metrics_doc._every_metric().registry.described}
    exposed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    exposed = {n + "_total" if f"# TYPE {n} counter" in text and not n.endswith("_total")
               else n for n in exposed}
    assert exposed <= documented, exposed - documented
    assert "idnode_db_up" in exposed and "idnode_http_connections" in exposed


def test_the_operations_guide_lists_every_metric() -> None:
    doc = config_doc.DOC.read_text(encoding="utf-8")
    assert metrics_doc.current(doc) == metrics_doc.section(), (
        "docs/OPERATIONS.md's metrics reference is stale: run "
        "`python -m idnode.metrics_doc --write`")
