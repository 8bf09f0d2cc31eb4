"""Where the node's keyrings are and how they are unlocked (read from settings once)."""
from __future__ import annotations

import fcntl
import logging
import os
import secrets
from pathlib import Path

from idnode.config import Settings
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


def keyring(s: Settings, name: str = "keys", *, create: bool = True) -> KeyRing:
    """The keyring `name` under data_dir (or keyring_dir for the node's own), with an active
    Ed25519 key (and ML-DSA-65 when post-quantum signing is on) created if there is none."""
    directory = Path(s.keyring_dir) if (s.keyring_dir and name == "keys") else \
        Path(s.data_dir) / name
    ring = KeyRing(directory, passphrase(s)).load()
    changed = False
    if create and ring.active() is None:
        ring.generate("EdDSA")
        changed = True
    if create and s.sign_post_quantum and ring.active("ML-DSA-65") is None:
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
    return statements, anchor.jwks()
