"""Where the node's keyrings are and how they are unlocked (read from settings once)."""
from __future__ import annotations

import fcntl
import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from idnode.config import Settings, SettingsError
from idnode.crypto import hsig
from idnode.crypto.certify import certify_key
from idnode.crypto.keys import KeyRing, SigningKey

log = logging.getLogger(__name__)


def passphrase(s: Settings) -> bytes:
    if s.key_passphrase:
        return s.key_passphrase.encode()
    if s.key_passphrase_file:
        return Path(s.key_passphrase_file).read_bytes().strip()
    # Development default: a random passphrase kept beside the keys. Production sets
    # key_passphrase_file to a secret mounted from elsewhere (see deploy/).
    path = Path(s.data_dir) / "key-passphrase"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        log.warning("keyring passphrase generated in %s (set key_passphrase_file in production)",
                    path)
    return path.read_bytes().strip()


#: The names signing_algorithms may list.
SIGNING_NAMES = ("EdDSA", "ES256", "SM2SM3", "ML-DSA-65", "RS256")
_BATCH_ALGS = ("EdDSA", "ES256", "SM2SM3")


@dataclass(frozen=True, slots=True)
class SigningPlan:
    """What signing_algorithms (and sign_post_quantum) ask for."""

    #: The JOSE batch signature's algorithm.
    batch: str
    post_quantum: bool
    #: The per-record Handle-value forms: "RS256" (Handle), "SM2SM3" (IDIS).
    forms: tuple[str, ...]


def plan(s: Settings) -> SigningPlan:
    """The signing plan of the settings; ValueError naming an unknown algorithm."""
    names = [n.strip() for n in s.signing_algorithms.split(",") if n.strip()]
    unknown = [n for n in names if n not in SIGNING_NAMES]
    if unknown:
        raise SettingsError(f"signing_algorithms: {', '.join(unknown)} unknown (choose from "
                         f"{', '.join(SIGNING_NAMES)})")
    batch = next((n for n in names if n in _BATCH_ALGS), "EdDSA")
    forms = tuple(a for a in ("RS256", "SM2SM3") if a in names)
    return SigningPlan(batch, s.sign_post_quantum or "ML-DSA-65" in names, forms)


def keyring(s: Settings, name: str = "keys", *, create: bool = True) -> KeyRing:
    """The keyring `name` under data_dir (or keyring_dir for the node's own), with an active
    key of the batch algorithm (signing_algorithms: Ed25519 by default; and ML-DSA-65 when
    post-quantum signing is on) created if there is none."""
    directory = Path(s.keyring_dir) if (s.keyring_dir and name == "keys") else \
        Path(s.data_dir) / name
    ring = KeyRing(directory, passphrase(s)).load()
    changed = False
    p = plan(s)
    if create and ring.active(p.batch) is None and (p.batch != "EdDSA" or ring.active() is None):
        ring.generate(p.batch)
        changed = True
    if create and p.post_quantum and ring.active("ML-DSA-65") is None:
        ring.generate("ML-DSA-65")
        changed = True
    if changed:
        ring.save()
    return ring


def protocol_key(s: Settings) -> SigningKey:
    """The Handle protocol server's RSA-2048 key (HS_SITE server key, signed responses): the
    active RS256 key of the keyring "protocol-keys" under data_dir, created if missing."""
    directory = Path(s.data_dir) / "protocol-keys"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    # Worker processes start together: without the lock two of them could each create a key
    # and serve different server keys until the next restart.
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ring = keyring(s, "protocol-keys", create=False)
        key = ring.active("RS256")
        if key is None:
            key = ring.generate("RS256")
            ring.save()
            log.info("protocol key created kid=%s dir=%s", key.kid, directory)
        return key


def self_certified(s: Settings, ring: KeyRing) -> tuple[dict[str, str], dict[str, object]]:
    """Without a top-level node: key statements by a local development anchor (data_dir/anchor),
    so records verify the same way; the anchor's JWKS is the trust root to hand verifiers."""
    anchor = keyring(s, "anchor")
    key = anchor.active()
    assert key is not None
    statements = {k.kid: certify_key(key, s.node_prefix, k.jwk) for k in ring.keys}
    return statements, anchor_jwks(s, "anchor") if plan(s).forms else anchor.jwks()


@contextmanager
def _ring_lock(directory: Path) -> Iterator[None]:
    # Worker processes start together: without the lock each could make its own key or
    # certificate and serve one the others do not.
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _with_algs(s: Settings, name: str, algs: tuple[str, ...]) -> KeyRing:
    """Keyring `name` under data_dir with an active key of each of `algs`."""
    directory = Path(s.data_dir) / name
    with _ring_lock(directory):
        ring = KeyRing(directory, passphrase(s)).load()
        made = [ring.generate(a) for a in algs if ring.active(a) is None]
        if made:
            ring.save()
            log.info("keys created ring=%s %s", name, " ".join(f"{k.alg}:{k.kid}" for k in made))
    return ring


def handle_keyring(s: Settings) -> KeyRing:
    """The node's record keys of the Handle and IDIS forms (RS256, SM2SM3: the ones
    signing_algorithms lists), in data_dir/handle-keys, created if missing. Apart from the
    JOSE keys: their certificates are HS_CERTs, not key statements."""
    return _with_algs(s, "handle-keys", plan(s).forms)


def anchor_keyring(s: Settings, name: str = "anchor") -> KeyRing:
    """An anchor's Handle roots (the development anchor's, or the top's "top-anchor"): an RSA
    and an SM2 key that self-certify the root record 0.0/0.0 and certify the nodes' HS_CERTs.
    A keyring of their own (`<name>-handle`): the anchor JWKS the top presents with key
    statements, which nodes compare with the one they pinned, stays the JOSE keys."""
    return _with_algs(s, f"{name}-handle", ("RS256", "SM2SM3"))


def anchor_jwks(s: Settings, name: str = "anchor") -> dict[str, Any]:
    """All of an anchor's public keys: its JOSE keys and its Handle roots (what `idnode
    verify` takes for all three forms, and what a node pins to accept its HS_CERTs)."""
    return {"keys": keyring(s, name).jwks()["keys"] + anchor_keyring(s, name).jwks()["keys"]}


@dataclass(frozen=True, slots=True)
class HandleCerts:
    """A node's Handle-value keys with their certificates, and the root record 0.0/0.0."""

    #: (record key, its HS_CERT) per form.
    certs: tuple[tuple[SigningKey, str], ...]
    #: The root record's values, as idnode.core.records.Value JSON.
    root: tuple[dict[str, Any], ...]


#: A certificate closer than this to its exp is issued afresh at start.
_RENEW = 30 * 86400


def self_certified_forms(s: Settings) -> HandleCerts:
    """Without a top-level node: the node's HS_CERTs issued by the development anchor and the
    root record 0.0/0.0 it certifies from, kept in data_dir/handle-keys/certs.json so that
    every worker serves the same ones (issued again when a key changes or within 30 days of
    expiry)."""
    from idnode.core.handlecerts import issue_node_cert, root_values

    forms = plan(s).forms
    node = handle_keyring(s)
    anchor = anchor_keyring(s, "anchor")
    path = Path(s.data_dir) / "handle-keys" / "certs.json"
    with _ring_lock(path.parent):
        try:
            kept = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            kept = {}
        certs = dict(kept.get("certs") or {})
        fresh = False
        now = time.time()
        for alg in forms:
            key, issuer = node.active(alg), anchor.active(alg)
            assert key is not None and issuer is not None
            claims = _claims(certs.get(alg))
            if (claims is None or claims.get("exp", 0) < now + _RENEW
                    or not hsig.same_key(claims.get("publicKey") or {}, key.jwk)
                    or not _issued_by(certs[alg], issuer)):
                certs[alg] = issue_node_cert(issuer, s.node_prefix, key.jwk)
                fresh = True
        root = kept.get("root")
        root_keys = {alg: anchor.active(alg) for alg in forms}
        if fresh or not root or kept.get("anchor") != {a: k.kid for a, k in root_keys.items()
                                                       if k is not None}:
            root = [v.to_json() for v in root_values([k for k in root_keys.values()
                                                      if k is not None])]
            fresh = True
        if fresh:
            doc = {"certs": certs, "root": root,
                   "anchor": {a: k.kid for a, k in root_keys.items() if k is not None}}
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            tmp.replace(path)
    pairs = []
    for alg in forms:
        key = node.active(alg)
        assert key is not None
        pairs.append((key, certs[alg]))
    return HandleCerts(tuple(pairs), tuple(root))


def _claims(jws: str | None) -> dict[str, Any] | None:
    if not jws:
        return None
    try:
        return hsig.parse(jws).claims
    except Exception:  # noqa: BLE001 - an unreadable kept certificate is issued again
        return None


def _issued_by(jws: str, issuer: SigningKey) -> bool:
    try:
        return hsig.signature_valid(hsig.parse(jws), issuer.private.public_key())
    except Exception:  # noqa: BLE001
        return False
