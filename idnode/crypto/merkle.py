"""RFC 6962 / RFC 9162 Merkle trees: root, inclusion and consistency proofs and their checks."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from idnode.crypto.errors import VerificationError


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """All levels bottom-up. Pairing left to right and carrying an odd last node up unhashed
    builds exactly RFC 6962's tree (left subtrees complete, the split at the largest power of
    two below n)."""
    if not leaves:
        return [[hashlib.sha256(b"").digest()]]
    out = [list(leaves)]
    while len(out[-1]) > 1:
        cur = out[-1]
        nxt = [node_hash(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])
        out.append(nxt)
    return out


def root(leaves: Sequence[bytes]) -> bytes:
    return levels(leaves)[-1][0]


def inclusion_proof_from_levels(lv: list[list[bytes]], index: int) -> list[bytes]:
    proof = []
    for level in lv[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def all_inclusion_proofs(lv: list[list[bytes]]) -> list[bytes]:
    """Every leaf's inclusion path (hashes concatenated), from the levels, in one pass per
    level: a batch needs them all."""
    n = len(lv[0])
    paths = [b""] * n
    span = 1  # leaves under one node of the current level
    for level in lv[:-1]:
        size = len(level)
        for node in range(size):
            sibling = node ^ 1
            if sibling < size:
                h = level[sibling]
                start = node * span
                for leaf in range(start, min(start + span, n)):
                    paths[leaf] += h
        span *= 2
    return paths


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    if not 0 <= index < len(leaves):
        raise ValueError("index out of range")
    return inclusion_proof_from_levels(levels(leaves), index)


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        raise VerificationError("bad_inclusion_path", f"leaf index {index} outside tree of {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != 32:
            raise VerificationError("bad_inclusion_path", "a proof hash is not 32 bytes")
        if sn == 0:
            raise VerificationError("bad_inclusion_path", "proof is longer than the tree")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("bad_inclusion_path", "proof is shorter than the tree needs")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     expected_root: bytes) -> None:
    if root_from_inclusion(leaf, index, size, proof) != expected_root:
        raise VerificationError("root_mismatch", "inclusion proof leads to another root")


def _largest_pow2_below(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def _subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [root(leaves)]
    k = _largest_pow2_below(n)
    if m <= k:
        return _subproof(m, leaves[:k], b) + [root(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [root(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], size1: int) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(m, D[n]) for the first `size1` of `leaves` (leaf hashes)."""
    if not 0 < size1 <= len(leaves):
        return []
    return _subproof(size1, leaves, True)


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes,
                       root2: bytes) -> None:
    """RFC 9162 §2.1.4.2, with the edge cases size1 == 0 and size1 == size2."""
    if size1 > size2:
        raise VerificationError("bad_inclusion_path", "the first tree is larger than the second")
    if size1 == size2:
        if proof:
            raise VerificationError("bad_inclusion_path", "equal trees need an empty proof")
        if root1 != root2:
            raise VerificationError("root_mismatch", "equal-size trees with different roots")
        return
    if size1 == 0:
        if proof:
            raise VerificationError("bad_inclusion_path", "an empty tree needs an empty proof")
        return
    if not proof:
        raise VerificationError("bad_inclusion_path", "consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is implicit
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("bad_inclusion_path", "consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("bad_inclusion_path", "consistency proof is too short")
    if fr != root1 or sr != root2:
        raise VerificationError("root_mismatch", "consistency proof does not join the roots")
