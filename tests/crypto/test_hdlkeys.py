"""Handle public keys and challenge signatures, checked against what hdllib 9.2.0 and the ID-SDK
2.0.3 themselves produced (tests/vectors/hdlkeys.json, made once with the jars: see
tests/vectors/hdlkeys/HdlKeyVectors.java), and every refusal with its reason."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.dsa import DSAPublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from idnode.crypto import hdlkeys
from idnode.crypto.hdlkeys import (
    REASONS,
    HandleKeyError,
    handle_key_bytes,
    load_public_key,
    sign_rsa,
    verify_signature,
)

KEYS = Path(__file__).parent.parent / "vectors" / "hdlkeys"
V: dict[str, Any] = json.loads((KEYS.parent / "hdlkeys.json").read_text())
PAD = b"\0\0\0\0"  # hdllib's RSA_PUB_KEY ends with an empty fifth array


def numbers(key: Any) -> Any:
    return key.public_numbers()


def reason_of(data: Any) -> str:
    with pytest.raises(HandleKeyError) as err:
        load_public_key(data)
    assert err.value.reason in REASONS and str(err.value)
    return err.value.reason


def private(name: str) -> Any:
    return serialization.load_pem_private_key((KEYS / f"{name}_priv.pem").read_bytes(), None)


def vector_key(name: str) -> Any:
    return serialization.load_der_public_key(bytes.fromhex(V["keys"][name]["spki_der_hex"]))


def spki_pem(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


# -- the ID-SDK's shared keys ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rsa", "dsa"])
def test_pem_and_handle_binary_of_a_key_load_to_the_same_numbers(name: str) -> None:
    from_pem = load_public_key((KEYS / f"{name}_pub.pem").read_bytes())
    from_bin = load_public_key((KEYS / f"{name}_pub.hdl.bin").read_bytes())
    assert numbers(from_pem) == numbers(from_bin) == numbers(private(name).public_key())
    assert isinstance(from_pem, RSAPublicKey if name == "rsa" else DSAPublicKey)
    # hdllib's own encoding of the same key (Util.getBytesFromPublicKey, from the vectors)
    assert handle_key_bytes(from_pem).hex() == V["keys"][name]["hdllib_bytes_hex"]


def test_shared_binary_keys_re_encode_byte_identically() -> None:
    dsa_bin = (KEYS / "dsa_pub.hdl.bin").read_bytes()
    assert handle_key_bytes(load_public_key(dsa_bin)) == dsa_bin
    # The SDK key generator wrote RSA without hdllib's four trailing zero bytes; both forms load,
    # and we write hdllib's.
    rsa_bin = (KEYS / "rsa_pub.hdl.bin").read_bytes()
    assert handle_key_bytes(load_public_key(rsa_bin)) == rsa_bin + PAD
    assert numbers(load_public_key(rsa_bin + PAD)) == numbers(load_public_key(rsa_bin))


@pytest.mark.parametrize("name", ["hdllib_rsa", "hdllib_dsa"])
def test_keys_written_by_hdllib_genkey_round_trip(name: str) -> None:
    raw = (KEYS / f"{name}_pub.bin").read_bytes()
    key = load_public_key(raw)
    assert handle_key_bytes(key) == raw
    assert numbers(key) == numbers(vector_key(name))


@pytest.mark.parametrize("name", sorted(V["keys"]))
def test_every_key_encodes_exactly_as_hdllib_does(name: str) -> None:
    entry = V["keys"][name]
    key = vector_key(name)
    hdl = bytes.fromhex(entry["hdllib_bytes_hex"])
    assert handle_key_bytes(key) == hdl
    if name.endswith("_weak"):
        assert reason_of(hdl) == reason_of(bytes.fromhex(entry["spki_der_hex"])) == "WEAK_KEY"
        return
    for form in (hdl, bytes.fromhex(entry["spki_der_hex"]), spki_pem(key)):
        assert numbers(load_public_key(form)) == numbers(key)


def test_vectors_cover_numbers_with_and_without_a_sign_byte() -> None:
    # BigInteger.toByteArray() adds 0x00 only when the top bit is set: both cases must occur.
    firsts = set()
    for entry in V["keys"].values():
        raw = bytes.fromhex(entry["hdllib_bytes_hex"])
        off = 4 + int.from_bytes(raw[:4], "big") + 2
        while off + 4 <= len(raw):
            n = int.from_bytes(raw[off:off + 4], "big")
            if n > 1:
                firsts.add(raw[off + 4] == 0)
            off += 4 + n
    assert firsts == {True, False}


# -- PEM and DER variants ----------------------------------------------------------------------
def test_pem_as_the_id_sdk_stores_it_with_whitespace_and_crlf() -> None:
    pem = (KEYS / "rsa_pub.pem").read_bytes()
    expected = numbers(load_public_key(pem))
    for variant in (pem.rstrip(), pem + b"\r\n\r\n  ", pem.replace(b"\n", b"\r\n"),
                    b"\n \t" + pem, pem.replace(b"\n", b"\r\n") + b" \r\n"):
        assert numbers(load_public_key(variant)) == expected
    assert numbers(load_public_key(bytearray(pem))) == expected


def test_pkcs1_rsa_public_key_pem_and_der_spki() -> None:
    key = private("rsa").public_key()
    pkcs1 = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    assert pkcs1.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    assert numbers(load_public_key(pkcs1)) == numbers(key)
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    assert numbers(load_public_key(der)) == numbers(key)
    dsa_der = private("dsa").public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert isinstance(load_public_key(dsa_der), DSAPublicKey)


# -- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(p.name for p in (KEYS / "negative").iterdir()) +
                         ["rsa_priv.pem", "dsa_priv.pem", "sm2_priv.pem", "rsa_priv.bin",
                          "dsa_priv.bin", "hdllib_rsa_priv.bin", "hdllib_dsa_priv.bin"])
def test_private_key_files_are_refused_as_such(path: str) -> None:
    file = KEYS / "negative" / path if (KEYS / "negative" / path).exists() else KEYS / path
    data = file.read_bytes()
    with pytest.raises(HandleKeyError) as err:
        load_public_key(data)
    assert err.value.reason == "PRIVATE_KEY"
    assert "public key" in str(err.value)
    # never echo key material
    assert data[40:80].decode("latin-1") not in str(err.value)


def test_sm2_key_is_refused_with_its_own_reason() -> None:
    with pytest.raises(HandleKeyError) as err:
        load_public_key((KEYS / "sm2_pub.pem").read_bytes())
    assert err.value.reason == "SM2_KEY"
    assert "SM2" in str(err.value) and "no Handle client can log in" in str(err.value)


@pytest.mark.parametrize("key", [
    ec.generate_private_key(ec.SECP256R1()).public_key(),
    ed25519.Ed25519PrivateKey.generate().public_key(),
], ids=["ec-p256", "ed25519"])
def test_ec_and_eddsa_keys_are_refused_saying_no_client_can_use_them(key: Any) -> None:
    for form in (spki_pem(key), key.public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)):
        with pytest.raises(HandleKeyError) as err:
            load_public_key(form)
        assert err.value.reason == "UNSUPPORTED_KEY_TYPE"
        assert "no Handle client can log in" in str(err.value)
    with pytest.raises(HandleKeyError):
        handle_key_bytes(key)


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + \
        n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


def _int(n: int) -> bytes:
    return _der(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def test_weak_keys_are_refused() -> None:
    weak = rsa.generate_private_key(65537, 1024).public_key()
    assert reason_of(spki_pem(weak)) == "WEAK_KEY"
    assert reason_of(handle_key_bytes(weak)) == "WEAK_KEY"
    # DSA with a 512-bit p, which neither OpenSSL nor cryptography will generate: built by hand
    p, q, g, y = (1 << 511) | 1, (1 << 159) | 1, 2, 3
    spki = _der(0x30, _der(0x30, _der(0x06, bytes.fromhex("2a8648ce380401")) +
                           _der(0x30, _int(p) + _int(q) + _int(g))) +
                _der(0x03, b"\0" + _int(y)))
    with pytest.raises(HandleKeyError) as err:
        load_public_key(spki)
    assert err.value.reason == "WEAK_KEY" and "512-bit p" in str(err.value)
    binary = b"".join(len(x).to_bytes(4, "big") + x for x in (
        b"DSA_PUB_KEY",)) + b"\0\0" + b"".join(
        len(b).to_bytes(4, "big") + b for b in (hdlkeys._java_bytes(v) for v in (q, p, g, y)))
    assert reason_of(binary) == "WEAK_KEY"


def _binary(kind: bytes, *nums: bytes, flags: bytes = b"\0\0") -> bytes:
    return len(kind).to_bytes(4, "big") + kind + flags + b"".join(
        len(n).to_bytes(4, "big") + n for n in nums)


RSA_BIN = bytes.fromhex(V["keys"]["hdllib_rsa"]["hdllib_bytes_hex"])
DSA_BIN = bytes.fromhex(V["keys"]["dsa"]["hdllib_bytes_hex"])


@pytest.mark.parametrize("data,reason", [
    (b"", "EMPTY"),
    (b" \r\n\t", "EMPTY"),
    (b"\x01" * (hdlkeys.MAX_KEY_BYTES + 1), "TOO_LARGE"),
    (b"hello, world", "MALFORMED"),
    (b"\xff\xfe\x00garbage", "MALFORMED"),
    (DSA_BIN + b"\0", "TRAILING_BYTES"),
    (RSA_BIN + b"\0", "TRAILING_BYTES"),             # hdllib's pad and one more byte
    (RSA_BIN[:-4] + b"\0\0\0\1", "TRAILING_BYTES"),  # four bytes, but not hdllib's pad
    (RSA_BIN[:-20], "MALFORMED"),                    # truncated modulus
    (DSA_BIN[:17], "MALFORMED"),                     # ends before the first number
    (RSA_BIN[:16], "MALFORMED"),                     # ends inside the flags
    (_binary(b"EC_PUB_KEY", b"\1"), "MALFORMED"),
    (_binary(b"DH_PUB_KEY", b"\5", b"\7", b"\2"), "UNSUPPORTED_FORMAT"),
    (_binary(b"RSA_PUB_KEY", b"\0", b""), "BAD_PARAMETERS"),
    (_binary(b"RSA_PUB_KEY", b"\x01" * 256, b"\x01\x00\x01"), "BAD_PARAMETERS"),  # n, e swapped
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "MALFORMED"),
    (b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", "MALFORMED"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n", "MALFORMED"),
    (b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n", "MALFORMED"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "UNSUPPORTED_FORMAT"),
    (b"-----BEGIN OPENSSH PUBLIC KEY-----\nAAAA\n-----END OPENSSH PUBLIC KEY-----",
     "UNSUPPORTED_FORMAT"),
    (b"\x30\x03\x02\x01\x01", "MALFORMED"),
    (b"\x30\x80", "MALFORMED"),
])
def test_malformed_keys_are_refused_with_a_precise_reason(data: bytes, reason: str) -> None:
    assert reason_of(data) == reason


def test_more_refusals() -> None:
    pem = (KEYS / "rsa_pub.pem").read_bytes()
    assert reason_of(pem + pem) == "MALFORMED"  # two PEM blocks
    assert reason_of(b"note: my key\n" + pem) == "MALFORMED"  # only whitespace around it
    der = private("rsa").public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert reason_of(der + b"\0") == "TRAILING_BYTES"
    assert reason_of(der[:-1]) == "MALFORMED"
    assert reason_of("a string") == "MALFORMED"  # type: ignore[arg-type]
    assert reason_of(None) == "MALFORMED"  # type: ignore[arg-type]
    # an X25519 SPKI and an unknown algorithm OID name what they are
    x = serialization.load_pem_public_key(
        b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEA3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08="
        b"\n-----END PUBLIC KEY-----\n")
    with pytest.raises(HandleKeyError, match="X25519") as err:
        load_public_key(spki_pem(x))
    assert err.value.reason == "UNSUPPORTED_KEY_TYPE"
    odd = _der(0x30, _der(0x30, _der(0x06, bytes.fromhex("2b06010401822c"))) + _der(0x03, b"\0\1"))
    with pytest.raises(HandleKeyError, match=r"OID 1\.3\.6\.1\.4\.1\.300:") as err:
        load_public_key(odd)
    assert err.value.reason == "UNSUPPORTED_KEY_TYPE"


# -- challenge answers from the real clients ---------------------------------------------------
ANSWERS = [a for a in V["challenge_answers"] if "error" not in a]


def _key_of(name: str) -> Any:
    return load_public_key(bytes.fromhex(V["keys"][name]["hdllib_bytes_hex"]))


@pytest.mark.parametrize("answer", ANSWERS,
                         ids=[f"{a['client']}-{a['key']}-{a['version']}" for a in ANSWERS])
def test_challenge_answers_of_hdllib_and_the_id_sdk_verify(answer: dict[str, str]) -> None:
    key = _key_of(answer["key"])
    hash_name = answer["hash_name"].encode()
    sig = bytes.fromhex(answer["signature_hex"])
    signed = bytes.fromhex(answer["nonce_hex"]) + bytes.fromhex(answer["digest_hex"])
    # the answer as sent: [len]hash name, [len]signature
    assert bytes.fromhex(answer["answer_hex"]) == (
        len(hash_name).to_bytes(4, "big") + hash_name + len(sig).to_bytes(4, "big") + sig)
    assert verify_signature(key, hash_name, sig, signed)
    # tampered data, another key, another hash name: refused, never an exception
    assert not verify_signature(key, hash_name, sig, signed[:-1] + bytes([signed[-1] ^ 1]))
    other = "dsa" if answer["key"].endswith("rsa") else "rsa"
    assert not verify_signature(_key_of(other), hash_name, sig, signed)
    name = answer["key"]
    twin = name.removeprefix("hdllib_") if name.startswith("hdllib_") else "hdllib_" + name
    assert not verify_signature(_key_of(twin), hash_name, sig, signed)  # same type, other key
    wrong_hash = b"SHA1" if hash_name != b"SHA1" else b"SHA-256"
    assert not verify_signature(key, wrong_hash, sig, signed)


def test_hash_names_the_clients_send() -> None:
    sent = {(a["client"], a["key"].removeprefix("hdllib_"), a["version"], a["hash_name"])
            for a in ANSWERS}
    # RSA: SHA-256 from protocol 2.7 (the ID-SDK always); DSA: SHA1 before 2.11, and always
    # from the ID-SDK; hdllib 2.11 signs DSA with SHA-256.
    assert ("hdllib", "rsa", "2.11", "SHA-256") in sent and ("hdllib", "rsa", "2.6", "SHA1") in sent
    assert ("hdllib", "dsa", "2.11", "SHA-256") in sent
    assert ("hdllib", "dsa", "2.10", "SHA1") in sent
    assert ("idsdk", "rsa", "2.10", "SHA-256") in sent and ("idsdk", "dsa", "2.10", "SHA1") in sent
    # hdllib cannot answer at all with a DSA-2048 key before 2.11 (the JDK refuses SHA1withDSA)
    failed = {(a["key"], a["version"]) for a in V["challenge_answers"] if "error" in a}
    assert failed == {("hdllib_dsa", "2.10"), ("hdllib_dsa", "2.6")}


def test_alternate_hash_spellings_are_accepted_and_md5_is_not() -> None:
    answer = next(a for a in ANSWERS if a["key"] == "rsa" and a["hash_name"] == "SHA-256")
    key, sig = _key_of("rsa"), bytes.fromhex(answer["signature_hex"])
    signed = bytes.fromhex(answer["nonce_hex"] + answer["digest_hex"])
    assert verify_signature(key, b"SHA256", sig, signed)
    old = next(a for a in ANSWERS if a["key"] == "rsa" and a["hash_name"] == "SHA1")
    old_signed = bytes.fromhex(old["nonce_hex"] + old["digest_hex"])
    assert verify_signature(key, b"SHA-1", bytes.fromhex(old["signature_hex"]), old_signed)
    md5 = private("rsa").sign(signed, padding.PKCS1v15(), hashes.MD5())
    assert not verify_signature(key, b"MD5", md5, signed)
    for name in (b"sha-256", b"SHA-256 ", b"", b"\x03", b"SHA-224"):
        assert not verify_signature(key, name, sig, signed)


# -- plain JCA signatures ----------------------------------------------------------------------
SIGS = V["signatures"]


@pytest.mark.parametrize("sig", SIGS, ids=[f"{s['key']}-{s['java_alg']}" for s in SIGS])
def test_java_signatures_verify(sig: dict[str, str]) -> None:
    key = _key_of(sig["key"])
    data = bytes.fromhex(V["data_hex"])
    raw = bytes.fromhex(sig["signature_hex"])
    assert verify_signature(key, sig["hash_name"].encode(), raw, data)
    assert not verify_signature(key, sig["hash_name"].encode(), raw, data + b"x")


@pytest.mark.parametrize("sig", [s for s in SIGS if s["key"] == "rsa"],
                         ids=[s["java_alg"] for s in SIGS if s["key"] == "rsa"])
def test_sign_rsa_is_byte_identical_to_java(sig: dict[str, str]) -> None:
    # PKCS#1 v1.5 is deterministic: the same key and data give Java's exact bytes.
    priv = private("rsa")
    assert isinstance(priv, RSAPrivateKey)
    out = sign_rsa(priv, sig["hash_name"].encode(), bytes.fromhex(V["data_hex"]))
    assert out.hex() == sig["signature_hex"]


def test_sign_rsa_refuses_unknown_hashes_and_non_rsa_keys() -> None:
    with pytest.raises(HandleKeyError) as err:
        sign_rsa(private("rsa"), b"MD5", b"x")
    assert err.value.reason == "UNSUPPORTED_HASH"
    with pytest.raises(HandleKeyError) as err:
        sign_rsa(private("dsa"), b"SHA-256", b"x")  # type: ignore[arg-type]
    assert err.value.reason == "UNSUPPORTED_KEY_TYPE"


def test_verify_signature_never_raises() -> None:
    key = _key_of("rsa")
    dsa_key = _key_of("dsa")
    good = sign_rsa(private("rsa"), b"SHA-256", b"data")
    assert verify_signature(key, b"SHA-256", good, b"data")
    assert verify_signature(key, bytearray(b"SHA-256"), bytearray(good), bytearray(b"data"))
    for args in [
        (key, b"SHA-256", good[:-1], b"data"),
        (key, b"SHA-256", good + b"\0", b"data"),
        (key, b"SHA-256", b"", b"data"),
        (key, "SHA-256", good, b"data"),
        (key, None, good, b"data"),
        (key, b"SHA-256", None, b"data"),
        (key, b"SHA-256", good, "data"),
        (None, b"SHA-256", good, b"data"),
        (ec.generate_private_key(ec.SECP256R1()).public_key(), b"SHA-256", good, b"data"),
        (dsa_key, b"SHA-256", good, b"data"),
        (dsa_key, b"SHA1", b"\x30\x00", b"data"),
        (dsa_key, b"SHA1", b"\x30\x06\x02\x01\x00\x02\x01\x00", b"data"),
    ]:
        assert verify_signature(*args) is False  # type: ignore[arg-type]
    # a DSA signature made here verifies too (DER r,s)
    dsa_sig = private("dsa").sign(b"data", hashes.SHA256())
    assert verify_signature(dsa_key, b"SHA-256", dsa_sig, b"data")


def test_reasons_are_upper_snake() -> None:
    assert all(r.isupper() and " " not in r for r in REASONS)
    assert issubclass(HandleKeyError, ValueError)
