"""Prometheus metrics: counters and histograms cheap enough for the hot path, text exposition.

Each worker process keeps its own registry and labels its series with `worker`; Prometheus
sums across scrapes of all workers (or scrape each, as the Kubernetes manifests do per pod).
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values))
    return "{" + inner + "}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Counter:
    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.doc, self.label_names = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def expose(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.doc}"
        yield f"# TYPE {self.name} counter"
        for key, v in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {v}"


class Gauge:
    """A value read when scraped."""

    def __init__(self, name: str, doc: str, read: Callable[[], Iterable[tuple[tuple[str, ...], float]]],
                 labels: tuple[str, ...] = ()) -> None:
        self.name, self.doc, self.read, self.label_names = name, doc, read, labels

    def expose(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.doc}"
        yield f"# TYPE {self.name} gauge"
        for key, v in self.read():
            yield f"{self.name}{_labels(self.label_names, key)} {v}"


class Histogram:
    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.doc, self.label_names, self.buckets = name, doc, labels, buckets
        # Per label set: [count per bucket..., +Inf count], sum.
        self.series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        s[0][bisect.bisect_left(self.buckets, value)] += 1
        s[1][0] += value

    def expose(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.doc}"
        yield f"# TYPE {self.name} histogram"
        for key, (counts, total) in sorted(self.series.items()):
            cumulative = 0
            base = dict(zip(self.label_names, key))
            for bound, c in zip((*self.buckets, float("inf")), counts):
                cumulative += c
                le = "+Inf" if bound == float("inf") else repr(bound)
                names = (*self.label_names, "le")
                yield f"{self.name}_bucket{_labels(names, (*base.values(), le))} {cumulative}"
            yield f"{self.name}_sum{_labels(self.label_names, key)} {total[0]}"
            yield f"{self.name}_count{_labels(self.label_names, key)} {cumulative}"


class Registry:
    def __init__(self, const_labels: dict[str, str] | None = None) -> None:
        self.metrics: list[Counter | Gauge | Histogram] = []
        self.const_labels = const_labels or {}

    def add(self, metric: Counter | Gauge | Histogram) -> Counter | Gauge | Histogram:
        self.metrics.append(metric)
        return metric

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        m = Counter(name, doc, labels)
        self.metrics.append(m)
        return m

    def histogram(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
        m = Histogram(name, doc, labels)
        self.metrics.append(m)
        return m

    def gauge(self, name: str, doc: str,
              read: Callable[[], Iterable[tuple[tuple[str, ...], float]]],
              labels: tuple[str, ...] = ()) -> Gauge:
        m = Gauge(name, doc, read, labels)
        self.metrics.append(m)
        return m

    def expose(self) -> str:
        lines: list[str] = []
        for m in self.metrics:
            lines.extend(m.expose())
        text = "\n".join(lines) + "\n"
        if self.const_labels:
            # Const labels go on every sample line.
            extra = ",".join(f'{k}="{_escape(v)}"' for k, v in self.const_labels.items())
            out = []
            for line in text.splitlines():
                if line.startswith("#") or not line:
                    out.append(line)
                    continue
                name, _, rest = line.partition(" ")
                if "{" in name:
                    name = name[:-1] + "," + extra + "}"
                else:
                    name = name + "{" + extra + "}"
                out.append(f"{name} {rest}")
            text = "\n".join(out) + "\n"
        return text


class NodeMetrics:
    """The node's metrics, built once in the composition root."""

    def __init__(self, worker: str = "0") -> None:
        self.registry = Registry({"worker": worker})
        r = self.registry
        self.http_requests = r.counter("idnode_http_requests_total", "HTTP requests.",
                                       ("route", "status"))
        self.http_latency = r.histogram("idnode_http_request_duration_seconds",
                                        "HTTP request latency.", ("route",))
        self.http_refused = r.counter(
            "idnode_http_refused_total", "HTTP connections cut or refused: past a timeout, the "
            "connection cap, or malformed or oversized input.", ("listener", "why"))
        self.grpc_requests = r.counter("idnode_grpc_requests_total", "gRPC calls.",
                                       ("method", "code"))
        self.grpc_latency = r.histogram("idnode_grpc_request_duration_seconds",
                                        "gRPC call latency.", ("method",))
        self.registered = r.counter("idnode_identifiers_registered_total",
                                    "Identifiers registered.")
        self.handle_requests = r.counter(
            "idnode_handle_requests_total", "Handle/IDIS protocol requests answered.",
            ("transport", "opcode", "rc"))
        self.handle_refused = r.counter(
            "idnode_handle_refused_total", "Handle/IDIS protocol input dropped or cut short: "
            "malformed, over a limit, or past the UDP response rate limit.",
            ("transport", "why"))
