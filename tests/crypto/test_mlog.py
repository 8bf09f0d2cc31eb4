"""The stored-subtree log (mlog) gives the same roots and proofs as the in-memory tree."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from idnode.crypto import merkle, mlog
from tests.crypto import reference


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=12), st.data())
def test_appending_in_chunks_matches_the_reference(chunks: list[int], data: st.DataObject) -> None:
    store: dict[tuple[int, int], bytes] = {}
    leaves: list[bytes] = []

    def fetch(keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return {k: store[k] for k in keys}

    for n in chunks:
        new = [merkle.leaf_hash(len(leaves).to_bytes(4, "big") + bytes([i])) for i in range(n)]
        known = fetch(set(mlog.frontier(len(leaves))))
        store.update(mlog.appended_nodes(len(leaves), new, known))
        leaves += new
        size = len(leaves)
        assert mlog.root(size, fetch) == reference.mth(leaves)
    size = len(leaves)
    i = data.draw(st.integers(0, size - 1))
    assert mlog.inclusion_proof(i, size, fetch) == reference.path(i, leaves)
    assert set(mlog.inclusion_proof_keys(i, size)) <= set(store)
    m = data.draw(st.integers(0, size))
    expected = reference.proof(m, leaves) if 0 < m < size else []
    assert mlog.consistency_proof(m, size, fetch) == expected
    merkle.verify_consistency(m, size, expected, reference.mth(leaves[:m]), reference.mth(leaves))
