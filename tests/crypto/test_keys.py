"""Keys: JWKs and thumbprints (RFC 7638 / RFC 8037 examples), key sets, the keyring on disk."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from idnode.crypto import b64
from idnode.crypto.errors import KeyStoreError, UnsupportedAlgorithm, VerificationError
from idnode.crypto.keys import (
    ALGS,
    KeyRing,
    KeySet,
    SigningKey,
    generate,
    load_keyring,
    public_from_jwk,
    save_keyring,
    thumbprint,
    verify_raw,
)

# RFC 8037 Appendix A.1-A.3: an Ed25519 key and its RFC 7638 thumbprint.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_rfc8037_key_and_thumbprint() -> None:
    key = SigningKey.from_seed("EdDSA", b64.dec(RFC8037_D))
    assert key.jwk == {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}
    assert key.kid == RFC8037_THUMBPRINT
    # extra members do not change a thumbprint
    assert thumbprint({**key.to_jwk(), "use": "enc"}) == RFC8037_THUMBPRINT


@pytest.mark.parametrize("alg,kty,members", [("EdDSA", "OKP", {"crv", "x"}),
                                             ("ES256", "EC", {"crv", "x", "y"}),
                                             ("ML-DSA-65", "AKP", {"alg", "pub"}),
                                             ("RS256", "RSA", {"n", "e"})])
def test_public_jwk_shapes(alg: str, kty: str, members: set[str]) -> None:
    key = generate(alg)
    assert key.jwk == {"kty": kty, **{m: key.jwk[m] for m in members}}
    full = key.to_jwk()
    assert full["kid"] == key.kid == thumbprint(key.jwk) and full["alg"] == alg
    assert full["use"] == "sig" and "idnode:status" not in full
    parsed_alg, _ = public_from_jwk(full)
    assert parsed_alg == alg
    if alg == "ES256":
        assert len(b64.dec(full["x"])) == len(b64.dec(full["y"])) == 32
    if alg == "ML-DSA-65":
        assert len(b64.dec(full["pub"])) == 1952


def test_unknown_algorithm() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        generate("RS512")
    with pytest.raises(KeyStoreError):  # UnsupportedAlgorithm is a KeyStoreError
        generate("none")


def test_public_jwks_with_private_members_or_bad_points_are_refused() -> None:
    key = generate("ES256")
    with pytest.raises(VerificationError) as err:
        public_from_jwk({**key.jwk, "d": "AAAA"})
    assert err.value.reason == "malformed"
    off_curve = {**key.jwk, "y": b64.enc(b"\x01" * 32)}
    with pytest.raises(VerificationError) as err:
        public_from_jwk(off_curve)
    assert err.value.reason == "malformed"
    with pytest.raises(VerificationError) as err:
        public_from_jwk({"kty": "RSA", "n": "AQAB", "e": "AQAB"})
    assert err.value.reason == "unsupported"


@pytest.mark.parametrize("alg", ALGS)
def test_repr_and_str_never_show_private_material(alg: str) -> None:
    key = generate(alg)
    ser = serialization
    if alg == "SM2SM3":  # an SM2 key is Tongsuo's, serialised by its own module
        from tongsuopy.crypto import serialization as ser  # type: ignore[no-redef]
    raw = key.private.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8,
                                    ser.NoEncryption())
    for text in (repr(key), str(key), f"{key}", repr([key]), repr(KeyRing(Path("/x"), b"p"))):
        assert raw.hex() not in text and b64.enc(raw) not in text
    assert key.kid in repr(key) and "active" in repr(key)


def test_keys_are_frozen_values() -> None:
    key = generate()
    with pytest.raises(AttributeError):
        key.retired_at = 1.0  # type: ignore[misc]
    retired = key.retire(123.0)
    assert key.status == "active" and retired.status == "retired" and retired.kid == key.kid
    assert retired.retire(999.0).retired_at == 123.0  # retiring twice keeps the first time
    jwk = retired.to_jwk()
    assert jwk["idnode:status"] == "retired" and jwk["idnode:retired_at"] == 123


def test_key_set_lookup() -> None:
    a, b = generate(), generate("ES256").retire(50.0)
    ks = KeySet.of(a, b)
    assert a.kid in ks and len(ks) == 2
    assert ks.get(b.kid)["idnode:status"] == "retired"
    assert KeySet.from_json(ks.to_json()) == ks
    assert KeySet.from_json(ks) is ks
    with pytest.raises(VerificationError) as err:
        ks.get("nope")
    assert err.value.reason == "unknown_key"
    bad: dict[str, Any]
    for bad in ({"keys": {}}, {"nokeys": []}, {"keys": [{"kty": "OKP"}]}):
        with pytest.raises(VerificationError) as err:
            KeySet.from_json(bad)
        assert err.value.reason == "malformed"
    twin = {**a.to_jwk(), "x": b.to_jwk()["x"]}
    with pytest.raises(VerificationError):
        KeySet((a.to_jwk(), twin))  # two keys under one kid
    # a kid naming another key's material is caught when the key is used
    lying = KeySet(({**b.to_jwk(), "kid": a.kid},))
    with pytest.raises(VerificationError) as err:
        lying.public(a.kid)
    assert err.value.reason == "malformed"


def test_keyring_round_trip_encrypted_at_rest(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "ring", b"correct horse")
    keys = [ring.generate(alg) for alg in ALGS]
    ring.save()
    assert oct((tmp_path / "ring").stat().st_mode)[-3:] == "700"
    for k in keys:
        path = tmp_path / "ring" / f"{k.kid}.pem"
        assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert oct(path.stat().st_mode)[-3:] == "600"
    meta = json.loads((tmp_path / "ring" / "keyring.json").read_text())
    assert [e["kid"] for e in meta["keys"]] == [k.kid for k in keys]
    assert all("BEGIN" not in json.dumps(e) for e in meta["keys"])
    loaded = KeyRing(tmp_path / "ring", b"correct horse").load()
    assert loaded.keys == keys
    assert loaded.keys[2].sign(b"x")  # the ML-DSA key came back usable
    assert load_keyring(tmp_path / "empty", b"x") == []


def test_keyring_refuses_wrong_passphrase_and_tampering(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError):
        KeyRing(tmp_path, b"")
    a, b = generate(), generate()
    save_keyring(tmp_path, [a, b], b"pw")
    with pytest.raises(KeyStoreError, match="passphrase"):
        load_keyring(tmp_path, b"wrong")
    meta_path = tmp_path / "keyring.json"
    meta = json.loads(meta_path.read_text())
    good = meta_path.read_text()
    # a file that holds another key than its name says
    os.replace(tmp_path / f"{b.kid}.pem", tmp_path / "b.tmp")
    (tmp_path / f"{b.kid}.pem").write_bytes((tmp_path / f"{a.kid}.pem").read_bytes())
    with pytest.raises(KeyStoreError, match="another key"):
        load_keyring(tmp_path, b"pw")
    os.replace(tmp_path / "b.tmp", tmp_path / f"{b.kid}.pem")
    # a kid that would make a path outside the directory
    meta["keys"][0]["kid"] = "../../etc/passwd"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(KeyStoreError, match="invalid kid"):
        load_keyring(tmp_path, b"pw")
    meta_path.write_text("{not json")
    with pytest.raises(KeyStoreError):
        load_keyring(tmp_path, b"pw")
    meta_path.write_text(good)
    assert [k.kid for k in load_keyring(tmp_path, b"pw")] == [a.kid, b.kid]


def test_rotate_and_retire(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path, b"pw")
    first = ring.generate()
    pq = ring.generate("ML-DSA-65")
    assert ring.active() == first and ring.active("ML-DSA-65") == pq
    second = ring.rotate()
    assert ring.active() == second
    old = ring.get(first.kid)
    assert old.status == "retired" and old.retired_at == second.created_at
    assert ring.active("ML-DSA-65") == pq  # rotating EdDSA leaves the PQ key alone
    ring.save()
    again = KeyRing(tmp_path, b"pw").load()
    assert again.get(first.kid).retired_at == old.retired_at
    jwks = again.jwks()
    status = {k["kid"]: k.get("idnode:status", "active") for k in jwks["keys"]}
    assert status == {first.kid: "retired", pq.kid: "active", second.kid: "active"}
    assert again.retire(pq.kid).status == "retired"
    assert again.active("ML-DSA-65") is None
    with pytest.raises(KeyStoreError):
        again.retire("no-such-kid")


# -- RS256 (the Handle protocol key) -----------------------------------------------------------
# RFC 7638 §3.1: an RSA public key and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
         "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y"
         "GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdk"
         "t-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqD"
         "Kgw"}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc7638_rsa_thumbprint_and_jwk() -> None:
    assert thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT
    alg, public = public_from_jwk(RFC7638_JWK)
    assert alg == "RS256" and public.key_size == 2048
    assert KeySet(({**RFC7638_JWK, "kid": RFC7638_THUMBPRINT},)).public(RFC7638_THUMBPRINT)[0] \
        == "RS256"


def test_rs256_key_signs_and_verifies_like_plain_cryptography() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = generate("RS256")
    assert key.private.key_size == 2048 and key.private.public_key().public_numbers().e == 65537
    assert set(key.jwk) == {"kty", "n", "e"} and key.jwk["kty"] == "RSA"
    assert key.jwk["e"] == "AQAB" and len(b64.dec(key.jwk["n"])) == 256
    assert key.kid == thumbprint(key.jwk) and key.to_jwk()["alg"] == "RS256"
    sig = key.sign(b"data")
    assert len(sig) == 256 and sig == key.sign(b"data")  # PKCS#1 v1.5 is deterministic
    key.private.public_key().verify(sig, b"data", padding.PKCS1v15(), hashes.SHA256())
    alg, public = public_from_jwk(key.to_jwk())
    assert alg == "RS256"
    assert verify_raw("RS256", public, sig, b"data")
    assert not verify_raw("RS256", public, sig, b"datA")
    assert not verify_raw("RS256", public, sig[:-1], b"data")
    assert not verify_raw("RS256", public, b"\0" + sig, b"data")
    with pytest.raises(UnsupportedAlgorithm):
        SigningKey.from_seed("RS256", b"\0" * 32)


def test_rsa_jwks_that_are_weak_or_spelled_twice_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(65537, 1024).public_key().public_numbers()
    weak = {"kty": "RSA", "e": "AQAB", "n": b64.enc(small.n.to_bytes(128, "big"))}
    with pytest.raises(VerificationError) as err:
        public_from_jwk(weak)
    assert err.value.reason == "unsupported"
    padded = {**RFC7638_JWK, "n": b64.enc(b"\0" + b64.dec(RFC7638_JWK["n"]))}
    with pytest.raises(VerificationError) as err:
        public_from_jwk(padded)  # the same key under another thumbprint: refused
    assert err.value.reason == "malformed"
    with pytest.raises(VerificationError) as err:
        public_from_jwk({**RFC7638_JWK, "alg": "PS256"})
    assert err.value.reason == "unsupported"
    with pytest.raises(VerificationError) as err:
        public_from_jwk({**RFC7638_JWK, "d": "AAAA"})
    assert err.value.reason == "malformed"


def test_rs256_is_never_a_default_signing_key(tmp_path: Path) -> None:
    from idnode.crypto.keys import CLASSICAL

    assert "RS256" not in CLASSICAL
    ring = KeyRing(tmp_path, b"pw")
    assert ring.generate("RS256") and ring.active() is None  # only an RS256 key: no default
    ed = ring.generate("EdDSA")
    rs = ring.generate("RS256")  # newer than the EdDSA key
    assert ring.active() == ed and ring.active("RS256") == rs
    ring.save()
    again = KeyRing(tmp_path, b"pw").load()
    assert again.active() == ed and again.active("RS256") == rs
    assert again.active("RS256").sign(b"x") == rs.sign(b"x")  # type: ignore[union-attr]


def test_protocol_key_is_created_once_and_kept(tmp_path: Path) -> None:
    from idnode.config import Settings
    from idnode.keys import keyring, protocol_key

    s = Settings(data_dir=tmp_path, key_passphrase="pp")
    key = protocol_key(s)
    assert key.alg == "RS256" and key.private.key_size == 2048
    assert protocol_key(s).kid == key.kid  # loaded, not made again
    files = {p.name for p in (tmp_path / "protocol-keys").iterdir()}
    assert files == {".lock", f"{key.kid}.pem", "keyring.json"}
    assert (tmp_path / "protocol-keys" / f"{key.kid}.pem").read_bytes().startswith(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # the protocol keyring holds no batch-signing key, and the node's own keyring no RS256 key
    assert keyring(s, "protocol-keys", create=False).active() is None
    assert all(k.alg != "RS256" for k in keyring(s).keys)
    with pytest.raises(KeyStoreError, match="passphrase"):
        protocol_key(Settings(data_dir=tmp_path, key_passphrase="wrong"))
    # a retired protocol key is replaced by a fresh one
    ring = keyring(s, "protocol-keys", create=False)
    ring.retire(key.kid)
    ring.save()
    fresh = protocol_key(s)
    assert fresh.kid != key.kid and fresh.status == "active"
