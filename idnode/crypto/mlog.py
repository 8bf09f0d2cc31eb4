"""An append-only RFC 6962 log kept as perfect-subtree roots: appending, roots and proofs
need O(log n) stored nodes, however long the log grows."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from idnode.crypto.merkle import node_hash

#: Reads stored nodes: {(level, index): hash} for the keys asked for.
Fetch = Callable[[set[tuple[int, int]]], dict[tuple[int, int], bytes]]


def frontier(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees whose roots make up a tree of `size` leaves, left to right."""
    out = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size & (1 << level):
            out.append((level, start >> level))
            start += 1 << level
    return out


def appended_nodes(size: int, leaves: Sequence[bytes],
                   known: dict[tuple[int, int], bytes]) -> dict[tuple[int, int], bytes]:
    """The nodes that appending `leaves` to a log of `size` creates. `known` must hold the
    frontier of `size` (what `frontier(size)` names)."""
    nodes = dict(known)
    new: dict[tuple[int, int], bytes] = {}
    for offset, leaf in enumerate(leaves):
        i = size + offset
        level = 0
        new[(0, i)] = nodes[(0, i)] = leaf
        while i & 1:
            parent = node_hash(nodes[(level, i - 1)], nodes[(level, i)])
            i >>= 1
            level += 1
            new[(level, i)] = nodes[(level, i)] = parent
    return new


def root(size: int, fetch: Fetch) -> bytes:
    parts = frontier(size)
    got = fetch(set(parts))
    r = got[parts[-1]]
    for key in reversed(parts[:-1]):
        r = node_hash(got[key], r)
    return r


def _subtree_keys(start: int, end: int, out: set[tuple[int, int]]) -> None:
    """Stored nodes needed to hash leaves [start, end)."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        out.add((n.bit_length() - 1, start // n))
        return
    k = 1
    while k << 1 < n:
        k <<= 1
    _subtree_keys(start, start + k, out)
    _subtree_keys(start + k, end, out)


def _subtree(start: int, end: int, got: dict[tuple[int, int], bytes]) -> bytes:
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        return got[(n.bit_length() - 1, start // n)]
    k = 1
    while k << 1 < n:
        k <<= 1
    return node_hash(_subtree(start, start + k, got), _subtree(start + k, end, got))


def _path_ranges(m: int, start: int, end: int) -> list[tuple[int, int]]:
    """RFC 6962 PATH(m, D[start:end]) as the leaf ranges whose hashes make it."""
    n = end - start
    if n <= 1:
        return []
    k = 1
    while k << 1 < n:
        k <<= 1
    if m < k:
        return _path_ranges(m, start, start + k) + [(start + k, end)]
    return _path_ranges(m - k, start + k, end) + [(start, start + k)]


def _proof_ranges(m: int, start: int, end: int, b: bool) -> list[tuple[int, int]]:
    """RFC 6962 SUBPROOF(m, D[start:end], b) as leaf ranges."""
    n = end - start
    if m == n:
        return [] if b else [(start, end)]
    k = 1
    while k << 1 < n:
        k <<= 1
    if m <= k:
        return _proof_ranges(m, start, start + k, b) + [(start + k, end)]
    return _proof_ranges(m - k, start + k, end, False) + [(start, start + k)]


def _hashes(ranges: list[tuple[int, int]], fetch: Fetch) -> list[bytes]:
    keys: set[tuple[int, int]] = set()
    for a, b in ranges:
        _subtree_keys(a, b, keys)
    got = fetch(keys)
    return [_subtree(a, b, got) for a, b in ranges]


def inclusion_proof(leaf: int, size: int, fetch: Fetch) -> list[bytes]:
    if not 0 <= leaf < size:
        raise ValueError("leaf outside the tree")
    return _hashes(_path_ranges(leaf, 0, size), fetch)


def consistency_proof(size1: int, size2: int, fetch: Fetch) -> list[bytes]:
    if not 0 < size1 <= size2:
        return []
    return _hashes(_proof_ranges(size1, 0, size2, True), fetch)


def _keys(ranges: list[tuple[int, int]]) -> set[tuple[int, int]]:
    keys: set[tuple[int, int]] = set()
    for a, b in ranges:
        _subtree_keys(a, b, keys)
    return keys


def inclusion_proof_keys(leaf: int, size: int) -> set[tuple[int, int]]:
    """The stored nodes `inclusion_proof(leaf, size, …)` reads: O(log² n) at most."""
    return _keys(_path_ranges(leaf, 0, size))


def consistency_proof_keys(size1: int, size2: int) -> set[tuple[int, int]]:
    if not 0 < size1 <= size2:
        return set()
    return _keys(_proof_ranges(size1, 0, size2, True))
