"""RFC 6962 / RFC 9162 Merkle trees over leaf hashes: roots, inclusion and consistency proofs
and their verification."""
from __future__ import annotations

import hashlib
from collections.abc import Generator, Sequence
from typing import TypeVar

from idnode.crypto.errors import VerificationError

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
T = TypeVar("T")


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of a leaf."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def levels(hashes: Sequence[bytes]) -> list[list[bytes]]:
    """All levels of the tree over leaf hashes, bottom-up, the last being [root]."""
    return finish(levels_in_steps(hashes))


def levels_in_steps(hashes: Sequence[bytes], step: int = 1024
                    ) -> Generator[None, None, list[list[bytes]]]:
    """`levels`, pausing (a bare yield) after about every `step` hashes, so that a caller on an
    event loop can let other work run between the pieces of a large tree."""
    # Pairing left to right and carrying an odd last node up unhashed builds exactly RFC
    # 6962's MTH (complete left subtrees, split at the largest power of two below n), with n-1
    # hashes and no recursion.
    if not hashes:
        return [[EMPTY_ROOT]]
    out = [list(hashes)]
    while len(out[-1]) > 1:
        cur = out[-1]
        nxt: list[bytes] = []
        last = len(cur) - 1
        for lo in range(0, last, 2 * step):
            nxt += [node_hash(cur[i], cur[i + 1]) for i in range(lo, min(lo + 2 * step, last), 2)]
            yield
        if len(cur) % 2:
            nxt.append(cur[-1])
        out.append(nxt)
    return out


def finish(steps: Generator[None, None, T]) -> T:
    """Runs a step-wise computation (`levels_in_steps`, …) to its end without pausing."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def root(hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaf hashes (SHA-256 of the empty string for no leaves)."""
    return levels(hashes)[-1][0]


def inclusion_proof_from_levels(lv: list[list[bytes]], index: int) -> list[bytes]:
    """The inclusion path of leaf `index` from a tree's levels."""
    proof = []
    for level in lv[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def all_inclusion_proofs(lv: list[list[bytes]]) -> list[bytes]:
    """Every leaf's inclusion path (hashes concatenated, 32 bytes each): a batch needs them all.

    Built top-down: a node's path is its sibling's hash followed by its parent's path, so each
    level costs one concatenation per node (2n in all, not n log n). A node without a sibling
    (the odd last one, carried up unhashed) has its parent's path.
    """
    return finish(all_inclusion_proofs_in_steps(lv))


def all_inclusion_proofs_in_steps(lv: list[list[bytes]], step: int = 2048
                                  ) -> Generator[None, None, list[bytes]]:
    """`all_inclusion_proofs`, pausing after about every `step` paths (see levels_in_steps)."""
    paths = [b""]
    for level in reversed(lv[:-1]):
        size = len(level)
        nxt: list[bytes] = []
        for lo in range(0, size, step):
            nxt += [level[j ^ 1] + paths[j >> 1] if j ^ 1 < size else paths[j >> 1]
                    for j in range(lo, min(lo + step, size))]
            yield
        paths = nxt
    return paths


def inclusion_proof(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 PATH(index, D[n]) over leaf hashes."""
    if not 0 <= index < len(hashes):
        raise ValueError(f"index {index} outside a tree of {len(hashes)}")
    return inclusion_proof_from_levels(levels(hashes), index)


def _check_hashes(proof: Sequence[bytes], reason: str) -> None:
    for p in proof:
        if not isinstance(p, bytes) or len(p) != HASH_BYTES:
            raise VerificationError(reason, "a proof element is not a 32-byte hash")


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion path leads to (RFC 9162 §2.1.3.2); VerificationError if the path
    cannot belong to leaf `index` of a tree of `size`."""
    if isinstance(index, bool) or not isinstance(index, int) or not isinstance(size, int):
        raise VerificationError("malformed", "leaf index and tree size must be integers")
    if not 0 <= index < size:
        raise VerificationError("index_out_of_range", f"leaf index {index} outside a tree of "
                                                      f"{size}")
    _check_hashes(proof, "bad_inclusion_path")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("bad_inclusion_path", "inclusion path longer than the tree "
                                                          "is deep")
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
        raise VerificationError("bad_inclusion_path", "inclusion path shorter than the tree "
                                                      "needs")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     expected_root: bytes) -> None:
    """Checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size` with
    `expected_root`; raises VerificationError("bad_inclusion_path" / "root_mismatch")."""
    if root_from_inclusion(leaf, index, size, proof) != expected_root:
        raise VerificationError("root_mismatch", "inclusion path leads to another root")


def _largest_pow2_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def _subproof(m: int, lv: list[list[bytes]], start: int, n: int, b: bool,
              out: list[bytes]) -> None:
    """RFC 6962 SUBPROOF(m, D[start:start+n], b), appending to out (hashes from `lv`)."""
    while m != n:
        k = _largest_pow2_below(n)
        if m <= k:
            out.append(_range_hash(lv, start + k, n - k))
            n = k
        else:
            out.append(_range_hash(lv, start, k))
            m, start, n, b = m - k, start + k, n - k, False
    if not b:
        out.append(_range_hash(lv, start, n))


def _range_hash(lv: list[list[bytes]], start: int, n: int) -> bytes:
    """MTH of leaves [start, start+n) of a tree whose levels are `lv`, where the range is a
    subtree of some RFC 6962 decomposition (a perfect subtree, or a right-hand tail)."""
    if n & (n - 1) == 0 and start % n == 0:
        return lv[n.bit_length() - 1][start // n]  # a perfect subtree is stored as is
    k = _largest_pow2_below(n)
    return node_hash(_range_hash(lv, start, k), _range_hash(lv, start + k, n - k))


def consistency_proof(hashes: Sequence[bytes], size1: int, size2: int | None = None
                      ) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(size1, D[size2]) over the first `size2` (default all) leaf
    hashes; empty when size1 is 0 or equals size2."""
    size2 = len(hashes) if size2 is None else size2
    if not 0 <= size1 <= size2 <= len(hashes):
        raise ValueError(f"need 0 <= size1 ({size1}) <= size2 ({size2}) <= {len(hashes)}")
    if size1 == 0 or size1 == size2:
        return []
    lv = levels(hashes[:size2])
    out: list[bytes] = []
    _subproof(size1, lv, 0, size2, True, out)
    out.reverse()  # built top-down; RFC 6962 lists the deepest node first
    return out


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes,
                       root2: bytes) -> None:
    """Checks that the tree (size2, root2) extends (size1, root1) (RFC 9162 §2.1.4.2, with
    the edge cases size1 == 0 and size1 == size2 as transparency-dev's verifier has them)."""
    if not isinstance(size1, int) or not isinstance(size2, int) or not 0 <= size1 <= size2:
        raise VerificationError("bad_consistency_path", f"sizes {size1} and {size2} are not "
                                                        "0 <= first <= second")
    _check_hashes(proof, "bad_consistency_path")
    if size1 == size2:
        if proof:
            raise VerificationError("bad_consistency_path", "equal trees need an empty proof")
        if root1 != root2:
            raise VerificationError("root_mismatch", "equal-size trees with different roots")
        return
    if size1 == 0:
        # Every tree extends the empty one; there is nothing to prove.
        if proof:
            raise VerificationError("bad_consistency_path", "an empty tree needs an empty proof")
        return
    if not proof:
        raise VerificationError("bad_consistency_path", "consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # the first tree is a perfect subtree: its root is implicit
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("bad_consistency_path", "consistency proof is too long")
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
        raise VerificationError("bad_consistency_path", "consistency proof is too short")
    if fr != root1 or sr != root2:
        raise VerificationError("root_mismatch", "consistency proof does not join the roots")
