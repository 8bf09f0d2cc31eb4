"""Prometheus metrics on prometheus_client: real counters and histograms, and values read from
the node's objects (gauges, and counters kept by those objects).

Every series carries a `worker` label. Under `idnode serve --workers N` the supervisor gives
its workers one PROMETHEUS_MULTIPROC_DIR: each writes its values there (prometheus_client's
multiprocess mode) and whichever worker a scrape reaches answers for all of them, so one scrape
sees every worker's series (sum them with `sum without (worker)`). Values read from objects
are refreshed when a scrape comes and, with several workers, every second by each worker
(so another worker's are at most a second old). A single process keeps them in memory.
"""
from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterable

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client import Counter as _Counter
from prometheus_client import Gauge as _Gauge
from prometheus_client import Histogram as _Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: The exposition's media type (Prometheus text format 0.0.4).
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST.encode()

# The *_created series are noise for these counters (a restart is visible in the worker's
# start time); they are never written in multiprocess mode either.
prometheus_client.disable_created_metrics()

Read = Callable[[], Iterable[tuple[tuple[str, ...], float]]]


def multiprocess_dir() -> str | None:
    """The directory shared by the workers of one `serve --workers N`, or None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Counter:
    """A counter with label values given positionally. Increments add to a dict (the hot
    path's cost: one dict update) and reach prometheus_client when the registry refreshes
    (each scrape, and every second with several workers)."""

    def __init__(self, metric: _Counter, worker: str) -> None:
        self._metric, self._worker = metric, worker
        self._pending: dict[tuple[str, ...], float] = {}
        #: labels -> [count], for callers that keep their labels' slot (see `slot`).
        self._slots: dict[tuple[str, ...], list[float]] = {}
        self._children: dict[tuple[str, ...], _Counter] = {}

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        pending = self._pending
        pending[labels] = pending.get(labels, 0.0) + amount

    def slot(self, labels: tuple[str, ...]) -> list[float]:
        """A one-item list whose value the caller adds to (`slot[0] += 1`: no call, no dict
        lookup on a hot path); kept for good and emptied in place at each flush."""
        found = self._slots.get(labels)
        if found is None:
            found = self._slots[labels] = [0.0]
        return found

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for labels, held in self._slots.items():
            if held[0]:
                pending[labels] = pending.get(labels, 0.0) + held[0]
                held[0] = 0.0
        for labels, amount in pending.items():
            child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = self._metric.labels(*labels, self._worker)
            child.inc(amount)


class Histogram:
    """A histogram with label values given positionally. An observation counts into this
    process's own buckets (a bisect and two list updates, ~0.3 µs; prometheus_client's
    `observe` costs 2-3 µs, more in multiprocess mode, where every bucket and the sum are
    written to a locked file) and reaches prometheus_client when the registry refreshes, as
    counters do."""

    def __init__(self, metric: _Histogram, worker: str, buckets: tuple[float, ...]) -> None:
        self._metric, self._worker = metric, worker
        #: The finite bucket bounds, ascending: a value belongs in counts[bisect_left(bounds,
        #: value)] of its labels' slot (prometheus_client counts a value in the first bucket
        #: whose bound is >= it; past the last one, +Inf).
        self.bounds = sorted(buckets)
        #: labels -> [count per bucket (the last: +Inf) ..., sum], kept for good and emptied
        #: in place at each flush (callers may hold them: `slot`).
        self._pending: dict[tuple[str, ...], list[float]] = {}
        self._children: dict[tuple[str, ...], _Histogram] = {}

    def slot(self, labels: tuple[str, ...]) -> list[float]:
        """The counts of `labels` (see _pending), for a hot path that observes into them
        itself: `counts[bisect_left(bounds, v)] += 1; counts[-1] += v`."""
        counts = self._pending.get(labels)
        if counts is None:
            counts = self._pending[labels] = [0] * (len(self.bounds) + 2)
        return counts

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        counts = self._pending.get(labels)
        if counts is None:
            counts = self.slot(labels)
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def flush(self) -> None:
        for labels, counts in self._pending.items():
            if not any(counts[:-1]):
                continue
            child = self._children.get(labels)
            if child is None:
                child = self._children[labels] = self._metric.labels(*labels, self._worker)
            # prometheus_client has no public way to add n observations of a bucket at
            # once; its buckets and sum are the values `observe` itself increments.
            for i, (bucket, n) in enumerate(zip(child._buckets, counts[:-1])):  # noqa: SLF001
                if n:
                    bucket.inc(n)
                    counts[i] = 0
            child._sum.inc(counts[-1])  # noqa: SLF001
            counts[-1] = 0


class Registry:
    """One process's metrics (one per node object: a test process runs several nodes)."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.collectors = CollectorRegistry(auto_describe=True)
        #: Values read from objects: gauges set, and counters advanced, by `refresh`.
        self._gauges: list[tuple[_Gauge, Read]] = []
        self._counted: list[tuple[_Counter, Read, dict[tuple[str, ...], float]]] = []
        self._counters: list[Counter] = []
        self._histograms: list[Histogram] = []
        #: (name as exposed, type, labels, help) of each metric, in the order registered.
        self.described: list[tuple[str, str, tuple[str, ...], str]] = []

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        self.described.append((name, "counter", labels, doc))
        counter = Counter(_Counter(_base(name), doc, (*labels, "worker"),
                                   registry=self.collectors), self.worker)
        self._counters.append(counter)
        return counter

    def histogram(self, name: str, doc: str, labels: tuple[str, ...] = (),
                  buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
        self.described.append((name, "histogram", labels, doc))
        histogram = Histogram(_Histogram(name, doc, (*labels, "worker"), buckets=buckets,
                                         registry=self.collectors), self.worker, buckets)
        self._histograms.append(histogram)
        return histogram

    def gauge(self, name: str, doc: str, read: Read, labels: tuple[str, ...] = ()) -> None:
        """A value read from the node's objects (`read` gives (label values, value) pairs).
        With several workers a dead worker's values are dropped (livemax)."""
        self.described.append((name, "gauge", labels, doc))
        self._gauges.append((_Gauge(name, doc, (*labels, "worker"), registry=self.collectors,
                                    multiprocess_mode="livemax"), read))

    def counted(self, name: str, doc: str, read: Read, labels: tuple[str, ...] = ()) -> None:
        """A counter that an object keeps (cache hits, ...): advanced by what it grew."""
        self.described.append((name, "counter", labels, doc))
        self._counted.append((_Counter(_base(name), doc, (*labels, "worker"),
                                       registry=self.collectors), read, {}))

    def refresh(self) -> None:
        """Brings the counters' increments and the values kept by objects into the metrics."""
        for mine in self._counters:
            mine.flush()
        for histogram in self._histograms:
            histogram.flush()
        for gauge, read in self._gauges:
            for labels, value in read():
                gauge.labels(*labels, self.worker).set(value)
        for counter, read, seen in self._counted:
            for labels, value in read():
                grown = value - seen.get(labels, 0.0)
                child = counter.labels(*labels, self.worker)  # shown from 0, as gauges are
                if grown > 0:
                    child.inc(grown)
                seen[labels] = value

    def expose(self) -> bytes:
        """The text exposition: this process's metrics, or every worker's."""
        self.refresh()
        shared = multiprocess_dir()
        if shared is None:
            return generate_latest(self.collectors)
        everyone = CollectorRegistry()
        multiprocess.MultiProcessCollector(everyone, path=shared)
        return generate_latest(everyone)


def _base(name: str) -> str:
    # prometheus_client adds _total to a counter's samples itself
    return name.removesuffix("_total")


def worker_exited(pid: int, shared: str) -> None:
    """Drops an exited worker's gauges from the shared directory (its counts stay counted)."""
    multiprocess.mark_process_dead(pid, path=shared)


class NodeMetrics:
    """The node's metrics, built once in the composition root."""

    def __init__(self, worker: str = "0") -> None:
        self.registry = Registry(worker)
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
