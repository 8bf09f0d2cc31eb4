"""China's commercial cryptography (商用密码) for the IDIS signature form: SM2 signatures
(GB/T 32918.2, curve of GB/T 32918.5) with the default user ID "1234567812345678" and SM3
(GB/T 32905) for the message digest, as GM/T 0009 specifies; SM3 digests of values.

The arithmetic is Tongsuo's (the OpenAtom Foundation's OpenSSL fork that carries the
national algorithms), through its Python binding tongsuopy: a C implementation, and the one
binding on PyPI that installs as a self-contained wheel (GmSSL's bindings load a libgmssl
that Debian does not package, or build one with cmake into $HOME at install time).

Names follow CAICT's ID-SDK (security/SignatureStructImpl, utils/JsonWorker): the JWS alg is
"SM2SM3", the public JWK is {"kty": "SM2", "x", "y"} (32-byte coordinates, base64url), the
signature is DER (SEQUENCE of r, s). None of them is registered with IANA.
"""
from __future__ import annotations

import hashlib
from typing import Any, TypeAlias

from tongsuopy.crypto import hashes as ts_hashes
from tongsuopy.crypto import serialization as ts_serialization
from tongsuopy.crypto.asymciphers import ec as ts_ec
from tongsuopy.crypto.exceptions import InvalidSignature as _TsInvalidSignature

from idnode.crypto import b64

ALG = "SM2SM3"
KTY = "SM2"
#: GM/T 0009-2012 §10: the user ID when the signer has none of its own.
DEFAULT_USER_ID = b"1234567812345678"
#: The recommended curve (GB/T 32918.5-2017): p, a, b, Gx, Gy, n.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123

_SM3 = ts_hashes.SM3()
_SIGN = ts_ec.ECDSA(_SM3)  # with an SM2 key: Z = SM3(ENTL‖ID‖a‖b‖G‖P), e = SM3(Z‖M)
_HASHLIB_SM3 = "sm3" in hashlib.algorithms_available

# tongsuopy ships no type information: to mypy these are Any, named for the reader.
PrivateKey: TypeAlias = ts_ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = ts_ec.EllipticCurvePublicKey


def sm3(data: bytes) -> bytes:
    """SM3 digest (32 bytes). The system OpenSSL's when it has SM3 (one C call, no object to
    build), else Tongsuo's: the same function, tests check both on the standard's vectors."""
    if _HASHLIB_SM3:
        return hashlib.new("sm3", data).digest()
    return sm3_tongsuo(data)


def sm3_tongsuo(data: bytes) -> bytes:
    h = ts_hashes.Hash(_SM3)
    h.update(data)
    return bytes(h.finalize())


def za(x: int, y: int, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """Z_A of GB/T 32918.2 §5.5: SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A). The
    library computes it itself when signing; this is for the published vectors and for
    readers checking a signature by hand."""
    entl = (len(user_id) * 8).to_bytes(2, "big")
    return sm3(entl + user_id + b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY, x, y)))


def generate() -> PrivateKey:
    """A fresh SM2 key whose public coordinates both have a non-zero first byte.

    Why the restriction: the ID-SDK's SM2Tool computes Z_A from BigInteger.toByteArray()
    with one leading zero byte stripped, so for a coordinate below 2^248 it hashes 31 bytes
    where the standard has 32, and its verifier rejects that key's (correct) signatures. About
    one key in 128 is affected; drawing again costs nothing and keeps every key usable by it.
    """
    while True:
        key = ts_ec.generate_private_key(ts_ec.SM2())
        nums = key.public_key().public_numbers()
        if nums.x >> 248 and nums.y >> 248:
            return key


def from_scalar(d: int) -> PrivateKey:
    """The SM2 key with private scalar `d` (test vectors)."""
    return ts_ec.derive_private_key(d, ts_ec.SM2())


def is_private_key(obj: object) -> bool:
    return isinstance(obj, ts_ec.EllipticCurvePrivateKey)


def is_public_key(obj: object) -> bool:
    return isinstance(obj, ts_ec.EllipticCurvePublicKey)


def sign(key: PrivateKey, data: bytes) -> bytes:
    """The SM2 signature of `data` (DER), with the default user ID and SM3."""
    return bytes(key.sign(data, _SIGN))


def verify(public: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` (DER) is an SM2 signature of `data` by `public`."""
    if not 8 <= len(signature) <= 72 or signature[0] != 0x30 or not _strict_der(signature):
        return False
    try:
        public.verify(signature, data, _SIGN)
    except _TsInvalidSignature:
        return False
    except Exception:  # noqa: BLE001 - a malformed signature is a failed one
        return False
    return True


def _strict_der(sig: bytes) -> bool:
    """SEQUENCE { INTEGER r, INTEGER s } in minimal DER with 0 < r, s < n: one encoding per
    signature, so a signature cannot be re-spelled into another valid token."""
    try:
        r, s, rest = _der_ints(sig)
    except ValueError:
        return False
    return not rest and 0 < r < N and 0 < s < N


def _der_ints(sig: bytes) -> tuple[int, int, bytes]:
    if len(sig) < 2 or sig[0] != 0x30 or sig[1] != len(sig) - 2:
        raise ValueError("not a DER SEQUENCE")
    pos, out = 2, []
    for _ in range(2):
        if pos + 2 > len(sig) or sig[pos] != 0x02:
            raise ValueError("not a DER INTEGER")
        n = sig[pos + 1]
        body = sig[pos + 2:pos + 2 + n]
        if len(body) != n or n == 0 or n > 33 or body[0] & 0x80 or \
                (n > 1 and body[0] == 0 and not body[1] & 0x80):
            raise ValueError("non-minimal INTEGER")
        out.append(int.from_bytes(body, "big"))
        pos += 2 + n
    return out[0], out[1], sig[pos:]


def der_signature(r: int, s: int) -> bytes:
    """DER of (r, s): what the ID-SDK's BaseConvertor.signatureFormat writes."""
    def integer(v: int) -> bytes:
        body = v.to_bytes(v.bit_length() // 8 + 1, "big")
        return b"\x02" + bytes([len(body)]) + body
    body = integer(r) + integer(s)
    return b"\x30" + bytes([len(body)]) + body


def rs(signature: bytes) -> tuple[int, int]:
    """(r, s) of a DER signature; ValueError when it is not one."""
    r, s, rest = _der_ints(signature)
    if rest:
        raise ValueError("trailing bytes after the signature")
    return r, s


def public_jwk(public: PublicKey) -> dict[str, str]:
    """{"kty": "SM2", "x", "y"}: the ID-SDK's JWK of an SM2 key (JsonWorker)."""
    nums = public.public_numbers()
    return {"kty": KTY, "x": b64.enc(nums.x.to_bytes(32, "big")),
            "y": b64.enc(nums.y.to_bytes(32, "big"))}


def public_from_jwk(jwk: dict[str, Any] | Any) -> PublicKey:
    """The public key of an SM2 JWK; ValueError when it is not a point of the curve."""
    x, y = b64.dec(jwk["x"]), b64.dec(jwk["y"])
    if len(x) != 32 or len(y) != 32:
        raise ValueError("SM2 coordinates are 32 bytes")
    xi, yi = int.from_bytes(x, "big"), int.from_bytes(y, "big")
    if not (xi < P and yi < P and (yi * yi - (xi ** 3 + A * xi + B)) % P == 0):
        raise ValueError("not a point of the SM2 curve")
    return ts_ec.EllipticCurvePublicNumbers(xi, yi, ts_ec.SM2()).public_key()


def public_pem(public: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM (id-ecPublicKey with the SM2 curve OID 1.2.156.10197.1.301):
    what the ID-SDK stores as an HS_PUBKEY value's bytes."""
    return bytes(public.public_bytes(ts_serialization.Encoding.PEM,
                                     ts_serialization.PublicFormat.SubjectPublicKeyInfo))


def encrypted_pem(key: PrivateKey, passphrase: bytes) -> bytes:
    return bytes(key.private_bytes(ts_serialization.Encoding.PEM,
                                   ts_serialization.PrivateFormat.PKCS8,
                                   ts_serialization.BestAvailableEncryption(passphrase)))


def load_pem(pem: bytes, passphrase: bytes | None) -> PrivateKey:
    """An SM2 private key from (encrypted) PKCS#8 PEM; ValueError when it is not one."""
    key = ts_serialization.load_pem_private_key(pem, passphrase)
    if not isinstance(key, ts_ec.EllipticCurvePrivateKey) or key.curve.name != "SM2":
        raise ValueError("not an SM2 private key")
    return key
