"""The operator listener's routes (/metrics, /healthz) and the observer that counts every
answered request of the public one."""
from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable

from idnode.api.http.problems import problem
from idnode.api.http.server import Request, Response
from idnode.core.stats import Stats
from idnode.metrics import NodeMetrics


def metrics_app(metrics: NodeMetrics) -> Callable[[Request], Response]:
    """The operator listener (metrics_host:metrics_port): Prometheus' /metrics, which is
    large and says much about the node, kept off the public port; and /healthz."""
    def route(req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            req.route = "method_not_allowed"
            return problem(405, f"{req.method} is not supported here",
                           headers=((b"Allow", b"GET, HEAD"),))
        if req.path == "/metrics":
            req.route = "metrics"
            return Response(200, metrics.registry.expose(),
                            b"text/plain; version=0.0.4; charset=utf-8")
        if req.path == "/healthz":
            req.route = "healthz"
            return Response(200, b'{"status":"ok"}')
        req.route = "other"
        return problem(404, f"no such resource: {req.path} (this listener serves /metrics "
                       "and /healthz)", instance=req.path)
    return route


def observer(metrics: NodeMetrics, stats: Stats) -> Callable[[Request, int], None]:
    """Counts each answered request and its latency: once per request, on every path, so
    the metrics' slots are held here (no call or label tuple a request)."""
    requests = metrics.http_requests
    latency = metrics.http_latency
    bounds = latency.bounds
    clock = time.perf_counter
    #: route -> (status -> its counter slot, the route's latency counts): a handful of each.
    slots: dict[str, tuple[dict[int, list[float]], list[float]]] = {}

    def observe(req: Request, status: int) -> None:
        route = req.route
        known = slots.get(route)
        if known is None:
            known = slots[route] = ({}, latency.slot((route,)))
        counted = known[0].get(status)
        if counted is None:
            counted = known[0][status] = requests.slot((route, str(status)))
        counted[0] += 1
        seconds = clock() - req.started
        counts = known[1]
        counts[bisect_left(bounds, seconds)] += 1
        counts[-1] += seconds
        if status >= 500:
            stats.error()

    return observe
