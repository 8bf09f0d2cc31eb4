"""The traceability log: append throughput and proof cost against log size (must grow as
O(log n)), on the log's own data structure (perfect-subtree roots) in memory; baseline = one
leaf hash, measured in the same run.

    .venv/bin/python bench/trace_log.py
"""
from __future__ import annotations

import time
from collections.abc import Iterable

from common import save

from idnode.crypto import merkle, mlog


def main() -> None:
    store: dict[tuple[int, int], bytes] = {}

    def fetch(keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return {k: store[k] for k in keys}

    size = 0
    started = time.perf_counter()
    leaf_cost = time.perf_counter()
    for i in range(10_000):
        merkle.leaf_hash(i.to_bytes(8, "big"))
    leaf_us = (time.perf_counter() - leaf_cost) / 10_000 * 1e6
    rows = []
    append_time = 0.0
    for target in (1_000, 10_000, 100_000, 1_000_000):
        leaves = [merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(size, target)]
        t = time.perf_counter()
        for lo in range(0, len(leaves), 1000):
            chunk = leaves[lo:lo + 1000]
            known = {k: store[k] for k in mlog.frontier(size)}
            store.update(mlog.appended_nodes(size, chunk, known))
            size += len(chunk)
        append_time += time.perf_counter() - t
        n_proofs = 200
        t = time.perf_counter()
        nodes_read = 0
        for j in range(n_proofs):
            leaf = (j * 7919) % size
            nodes_read += len(mlog.inclusion_proof_keys(leaf, size))
            mlog.inclusion_proof(leaf, size, fetch)
        proof_us = (time.perf_counter() - t) / n_proofs * 1e6
        rows.append({"log_size": size, "inclusion_proof_us": round(proof_us, 1),
                     "nodes_read_per_proof": round(nodes_read / n_proofs, 1),
                     "proof_hashes": len(mlog.inclusion_proof(size // 3, size, fetch)),
                     "ratio_to_one_leaf_hash": round(proof_us / leaf_us, 1)})
    save("trace_log", {"leaf_hash_us": round(leaf_us, 2),
                       "append_us_per_event_tree_only": round(append_time / size * 1e6, 2),
                       "by_size": rows,
                       "total_seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
