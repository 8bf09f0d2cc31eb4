"""The traffic mix: which codes consumers scan (Zipf: a few hot products, a long cold tail,
some unknown codes) and how fast each simulated user goes. No locust or gRPC imports here, so
capacity.py and the tests can use it too."""
from __future__ import annotations

import bisect
import math
import random
import time
import uuid

PREFIX = "0.118.8"
#: The data set the capacity run seeds and the users read: PREFIX/LT-00000000 …
DATASET_FORMAT = "LT-{:08d}"


def dataset_id(n: int) -> str:
    return f"{PREFIX}/{DATASET_FORMAT.format(n)}"


class Zipf:
    """Ranks 0..n-1 with probability ∝ 1/(rank+1)^s, mapped onto identifiers by a fixed
    permutation, so the hot codes are spread over the data set (and over its partitions and
    pages) rather than being its first rows."""

    def __init__(self, n: int, s: float, seed: int = 7) -> None:
        if n < 1:
            raise ValueError("the data set needs at least one identifier")
        self.n = n
        acc = 0.0
        cdf = []
        for k in range(n):
            acc += 1.0 / (k + 1) ** s
            cdf.append(acc)
        self.cdf = [c / acc for c in cdf]
        step = 2_654_435_761 % n or 1  # Knuth's multiplicative constant, made coprime with n
        while math.gcd(step, n) != 1:
            step += 1
        self.step = step
        self.offset = seed % n

    def rank(self) -> int:
        return min(bisect.bisect_left(self.cdf, random.random()), self.n - 1)

    def draw(self) -> int:
        """An identifier number: hot ones often, cold ones rarely."""
        return (self.rank() * self.step + self.offset) % self.n

    def hot_share(self, top: int) -> float:
        """The share of scans that go to the `top` hottest identifiers."""
        return self.cdf[min(top, self.n) - 1]


_zipfs: dict[tuple[int, float], Zipf] = {}


def zipf(n: int, s: float) -> Zipf:
    """One table per process and shape (building it for a million codes takes ~0.5 s)."""
    key = (n, s)
    if key not in _zipfs:
        _zipfs[key] = Zipf(n, s)
    return _zipfs[key]


def unknown_id() -> str:
    """A well-formed code under the data set's prefix that nobody registered."""
    return f"{PREFIX}/UNKNOWN-{uuid.uuid4().hex[:16]}"


class Pacer:
    """Wait times that hold one user at `rate` actions a second (0: no wait at all), starting
    at a random phase so that many users do not fire in lockstep."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic() + random.uniform(0, self.interval)

    def wait(self) -> float:
        if not self.interval:
            return 0.0
        now = time.monotonic()
        self.next_at = max(self.next_at + self.interval, now)  # never bank missed slots
        return max(0.0, self.next_at - now)


def parse_weights(spec: str) -> dict[str, float]:
    """'register:2,update:1,resolve:2' → {'register': 2.0, …}."""
    out: dict[str, float] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, _, w = part.partition(":")
        out[name.strip()] = float(w or 1)
    return out


def parse_steps(spec: str) -> list[tuple[int, float]]:
    """'10x30s,40x1m' → [(10, 30.0), (40, 60.0)]."""
    steps = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        users, _, dur = part.partition("x")
        unit = 60.0 if dur.endswith("m") else 1.0
        steps.append((int(users), float(dur.rstrip("sm")) * unit))
    return steps
