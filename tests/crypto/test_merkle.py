"""RFC 6962 / 9162 Merkle trees against the RFC's recursive definitions and its test data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idnode.crypto import merkle
from idnode.crypto.errors import VerificationError
from tests.crypto import reference

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "merkle.json").read_text())
# Published with the RFC 6962 reference test data (certificate-transparency, transparency-dev
# merkle testonly): roots of the first n of the eight leaves. Kept here, apart from the JSON,
# so the vectors file cannot drift with the code that made it.
PUBLISHED_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

LEAVES = [merkle.leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaf_inputs_hex"]]


def test_leaf_hashes_and_published_roots() -> None:
    assert [h.hex() for h in LEAVES] == VECTORS["leaf_hashes_hex"]
    assert merkle.root([]).hex() == VECTORS["empty_root_hex"] == EMPTY_ROOT
    for n, expected in enumerate(PUBLISHED_ROOTS, start=1):
        assert merkle.root(LEAVES[:n]).hex() == expected


@pytest.mark.parametrize("tree", VECTORS["trees"], ids=lambda t: f"size{t['size']}")
def test_vectors(tree: dict) -> None:
    n = tree["size"]
    d = LEAVES[:n]
    r = bytes.fromhex(tree["root_hex"])
    assert merkle.root(d) == r
    lv = merkle.levels(d)
    every = merkle.all_inclusion_proofs(lv)
    for case in tree["inclusion"]:
        i, path = case["index"], [bytes.fromhex(h) for h in case["path_hex"]]
        assert merkle.inclusion_proof(d, i) == path
        assert every[i] == b"".join(path)
        merkle.verify_inclusion(d[i], i, n, path, r)
    for case in tree["consistency"]:
        m, proof = case["size1"], [bytes.fromhex(h) for h in case["proof_hex"]]
        assert merkle.consistency_proof(d, m) == proof
        merkle.verify_consistency(m, n, proof, merkle.root(d[:m]), r)


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.data())
def test_matches_the_recursive_definitions(n: int, data: st.DataObject) -> None:
    d = _leaves(n)
    assert merkle.root(d) == reference.mth(d)
    i = data.draw(st.integers(0, n - 1))
    assert merkle.inclusion_proof(d, i) == reference.path(i, d)
    assert merkle.all_inclusion_proofs(merkle.levels(d))[i] == b"".join(reference.path(i, d))
    if n > 1:
        m = data.draw(st.integers(1, n - 1))
        assert merkle.consistency_proof(d, m) == reference.proof(m, d)
        # the same proof from a longer list cut at size2
        assert merkle.consistency_proof(d + _leaves(3), m, n) == reference.proof(m, d)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 200), st.data())
def test_every_inclusion_and_consistency_proof_verifies(n: int, data: st.DataObject) -> None:
    d = _leaves(n)
    r = merkle.root(d)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(d, i)
    assert len(proof) <= (n - 1).bit_length()  # O(log n)
    merkle.verify_inclusion(d[i], i, n, proof, r)
    m = data.draw(st.integers(0, n))
    cproof = merkle.consistency_proof(d, m)
    assert len(cproof) <= 2 * n.bit_length()
    merkle.verify_consistency(m, n, cproof, merkle.root(d[:m]), r)


def _flip(hs: list[bytes], at: int, bit: int) -> list[bytes]:
    out = list(hs)
    h = bytearray(out[at])
    h[bit // 8] ^= 1 << (bit % 8)
    out[at] = bytes(h)
    return out


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 200), st.data())
def test_any_tampering_with_an_inclusion_proof_fails(n: int, data: st.DataObject) -> None:
    d = _leaves(n)
    r = merkle.root(d)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(d, i)
    j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
    with pytest.raises(VerificationError) as err:
        merkle.verify_inclusion(d[i], j, n, proof, r)
    assert err.value.reason in ("root_mismatch", "bad_inclusion_path")
    at, bit = data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255))
    with pytest.raises(VerificationError) as err:
        merkle.verify_inclusion(d[i], i, n, _flip(proof, at, bit), r)
    assert err.value.reason == "root_mismatch"
    with pytest.raises(VerificationError) as err:
        merkle.verify_inclusion(d[i], i, n, proof[:-1], r)
    assert err.value.reason == "bad_inclusion_path"
    with pytest.raises(VerificationError) as err:
        merkle.verify_inclusion(d[i], i, n, proof + [r], r)
    assert err.value.reason == "bad_inclusion_path"
    with pytest.raises(VerificationError) as err:
        merkle.verify_inclusion(_flip([d[i]], 0, bit)[0], i, n, proof, r)
    assert err.value.reason == "root_mismatch"
    with pytest.raises(VerificationError) as err:
        merkle.verify_inclusion(d[i], n + data.draw(st.integers(0, 5)), n, proof, r)
    assert err.value.reason == "index_out_of_range"


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 200), st.data())
def test_any_tampering_with_a_consistency_proof_fails(n: int, data: st.DataObject) -> None:
    d = _leaves(n)
    m = data.draw(st.integers(1, n - 1))
    r1, r2 = merkle.root(d[:m]), merkle.root(d)
    proof = merkle.consistency_proof(d, m)
    at, bit = data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255))
    with pytest.raises(VerificationError):
        merkle.verify_consistency(m, n, _flip(proof, at, bit), r1, r2)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(m, n, proof[:-1], r1, r2)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(m, n, proof + [r2], r1, r2)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(m, n, proof, _flip([r1], 0, bit)[0], r2)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(m, n, proof, r1, _flip([r2], 0, bit)[0])
    other = data.draw(st.integers(1, n - 1).filter(lambda k: k != m))
    with pytest.raises(VerificationError):
        merkle.verify_consistency(other, n, proof, merkle.root(d[:other]), r2)


def test_consistency_edge_cases() -> None:
    d = _leaves(4)
    r = merkle.root(d)
    merkle.verify_consistency(4, 4, [], r, r)
    merkle.verify_consistency(0, 4, [], b"", r)  # every tree extends the empty tree
    assert merkle.consistency_proof(d, 0) == merkle.consistency_proof(d, 4) == []
    cases = [((4, 4, [r], r, r), "bad_consistency_path"),
             ((4, 4, [], r, merkle.leaf_hash(b"x")), "root_mismatch"),
             ((0, 4, [r], b"", r), "bad_consistency_path"),
             ((5, 4, [], r, r), "bad_consistency_path"),
             ((2, 4, [], merkle.root(d[:2]), r), "bad_consistency_path"),
             ((2, 4, [b"short"], merkle.root(d[:2]), r), "bad_consistency_path")]
    for args, reason in cases:
        with pytest.raises(VerificationError) as err:
            merkle.verify_consistency(*args)  # type: ignore[arg-type]
        assert err.value.reason == reason, args
    with pytest.raises(ValueError):
        merkle.consistency_proof(d, 5)


def test_single_leaf_tree() -> None:
    d = _leaves(1)
    assert merkle.root(d) == d[0] and merkle.inclusion_proof(d, 0) == []
    merkle.verify_inclusion(d[0], 0, 1, [], d[0])
    with pytest.raises(VerificationError) as err:
        merkle.verify_inclusion(d[0], 0, 1, [d[0]], d[0])
    assert err.value.reason == "bad_inclusion_path"


def test_malformed_inputs() -> None:
    d = _leaves(3)
    r = merkle.root(d)
    proof = merkle.inclusion_proof(d, 0)
    for index, size, p, reason in [(True, 3, proof, "malformed"), (0, 0, [], "index_out_of_range"),
                                   (-1, 3, proof, "index_out_of_range"),
                                   (0, 3, [proof[0][:31], proof[1]], "bad_inclusion_path")]:
        with pytest.raises(VerificationError) as err:
            merkle.verify_inclusion(d[0], index, size, p, r)  # type: ignore[arg-type]
        assert err.value.reason == reason


def test_large_tree_proofs_are_logarithmic() -> None:
    d = _leaves(10_000)
    lv = merkle.levels(d)
    r = lv[-1][0]
    every = merkle.all_inclusion_proofs(lv)
    for i in (0, 1, 4095, 4096, 8191, 9998, 9999):
        path = [every[i][k:k + 32] for k in range(0, len(every[i]), 32)]
        assert len(path) <= 14 and path == merkle.inclusion_proof(d, i)
        merkle.verify_inclusion(d[i], i, 10_000, path, r)
    proof = merkle.consistency_proof(d, 7_777)
    assert len(proof) <= 28
    merkle.verify_consistency(7_777, 10_000, proof, merkle.root(d[:7_777]), r)


@given(st.integers(0, 70), st.integers(1, 9))
@settings(max_examples=60, deadline=None)
def test_the_step_wise_tree_is_the_same_tree(n: int, step: int) -> None:
    """levels_in_steps / all_inclusion_proofs_in_steps (what a registration runs between
    event-loop turns) build exactly what the one-go functions build, whatever the step."""
    hashes = [merkle.leaf_hash(bytes([i])) for i in range(n)]
    pauses = 0
    steps = merkle.levels_in_steps(hashes, step)
    while True:
        try:
            next(steps)
            pauses += 1
        except StopIteration as done:
            lv = done.value
            break
    assert lv == merkle.levels(hashes)
    assert lv[-1][0] == reference.mth(hashes)
    if n > 2 * step:
        assert pauses >= n // (2 * step)  # it does pause, about every `step` hashes
    if n:
        assert merkle.finish(merkle.all_inclusion_proofs_in_steps(lv, step)) == \
            merkle.all_inclusion_proofs(lv)
