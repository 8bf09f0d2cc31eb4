"""Public keys and signatures as the Handle protocol carries them: HS_PUBKEY data (hdllib's binary
key encoding, or the PEM file bytes the ID-SDK stores) and challenge-answer signatures.

References: hdllib 9.2.0 `Util.getBytesFromPublicKey` / `getPublicKeyFromBytes` (the binary
encoding), `PublicKeyAuthenticationInfo.authenticate` and `Util.getDefaultSigId` /
`getHashAlgIdFromSigId` (what a client signs, under which hash name); ID-SDK 2.0.3
`security/PubKeyAuthentication` and `utils/Util` (the same, plus PEM public keys).
"""
from __future__ import annotations

import base64
import binascii
import re

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.dsa import DSAPublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

PublicKey = RSAPublicKey | DSAPublicKey

#: Every HandleKeyError.reason, with what it means (stable: callers map them to API errors).
REASONS: dict[str, str] = {
    "EMPTY": "no key bytes at all",
    "TOO_LARGE": "more bytes than any usable RSA or DSA public key needs, or RSA over 16384 bits",
    "MALFORMED": "not a public key in any accepted encoding, or a damaged one",
    "TRAILING_BYTES": "bytes left over after a complete key",
    "PRIVATE_KEY": "a private key where the public key belongs",
    "UNSUPPORTED_FORMAT": "a recognisable encoding that does not carry a signing public key "
                          "(certificate, Diffie-Hellman session key, other PEM type)",
    "UNSUPPORTED_KEY_TYPE": "a key type no Handle client can log in with (EC, EdDSA, ...)",
    "SM2_KEY": "an SM2 key: the ID-SDK loads it but cannot sign a challenge with it",
    "WEAK_KEY": "RSA under 2048 bits or DSA with p under 1024 bits",
    "BAD_PARAMETERS": "key numbers that do not make a valid key",
    "UNSUPPORTED_HASH": "a hash name this module does not sign with",
}

MIN_RSA_BITS = 2048
MIN_DSA_P_BITS = 1024
MAX_RSA_BITS = 16384
#: An RSA-16384 key is about 2 KiB in any of the encodings, its PEM under 3 KiB.
MAX_KEY_BYTES = 16 * 1024

_RSA_PUB = b"RSA_PUB_KEY"
_DSA_PUB = b"DSA_PUB_KEY"
_DH_PUB = b"DH_PUB_KEY"
# hdllib sizes its RSA_PUB_KEY buffer for four length fields but writes three arrays, so every
# RSA key it encodes ends with four zero bytes (an empty array). Readers ignore them; we write
# them (byte-identical HS_PUBKEY values) and accept keys with or without them.
_HDLLIB_RSA_PAD = b"\0\0\0\0"
# hdllib Common.KEY_ENCODING_*_PRIVATE: someone binding a key file by mistake.
_HANDLE_PRIVATE = (b"RSA_PRIV_KEY", b"RSA_PRIVCRT_KEY", b"DSA_PRIV_KEY", b"DH_PRIV_KEY")

# Hash names as clients send them in a challenge answer. hdllib and the ID-SDK send "SHA-256"
# (RSA; DSA from protocol 2.11) or "SHA1" (DSA before 2.11, anything before 2.7); hdllib's
# verifier also takes "SHA256" and "SHA-1"; SHA-384/512 are accepted for clients that sign
# with them. MD5 is left out on purpose: no hdllib or ID-SDK code path signs a challenge with it.
_HASHES: dict[bytes, type[hashes.HashAlgorithm]] = {
    b"SHA-256": hashes.SHA256, b"SHA256": hashes.SHA256,
    b"SHA1": hashes.SHA1, b"SHA-1": hashes.SHA1,
    b"SHA-384": hashes.SHA384, b"SHA-512": hashes.SHA512,
}

# SubjectPublicKeyInfo algorithm OIDs (DER content bytes) worth naming in an error.
_OID_RSA = bytes.fromhex("2a864886f70d010101")          # 1.2.840.113549.1.1.1
_OID_DSA = bytes.fromhex("2a8648ce380401")              # 1.2.840.10040.4.1
_OID_EC = bytes.fromhex("2a8648ce3d0201")               # 1.2.840.10045.2.1
_OID_SM2_CURVE = bytes.fromhex("2a811ccf5501822d")      # 1.2.156.10197.1.301 (sm2p256v1)
_OTHER_ALGS = {
    bytes.fromhex("2b6570"): "Ed25519", bytes.fromhex("2b6571"): "Ed448",
    bytes.fromhex("2b656e"): "X25519", bytes.fromhex("2b656f"): "X448",
    bytes.fromhex("2a864886f70d01010a"): "RSASSA-PSS",
    bytes.fromhex("2a864886f70d010301"): "Diffie-Hellman",
    bytes.fromhex("2a8648ce3e0201"): "Diffie-Hellman (X9.42)",
    bytes.fromhex("608648016503040311"): "ML-DSA-44",
    bytes.fromhex("608648016503040312"): "ML-DSA-65",
    bytes.fromhex("608648016503040313"): "ML-DSA-87",
}
_CANNOT_LOG_IN = ("no Handle client can log in with it: hdllib and the ID-SDK answer a "
                  "challenge with RSA (SHA256withRSA) or DSA (SHA1/SHA256withDSA) only; "
                  "bind an RSA-2048 (or larger) key")

_PEM_LINE = re.compile(rb"-----(BEGIN|END) ([A-Z0-9 #-]+)-----")
_B64_LINE = re.compile(rb"[A-Za-z0-9+/=]*")


class HandleKeyError(ValueError):
    """A key that cannot be bound or used: `reason` is one of REASONS, the message says what
    is wrong in words (never the key material)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# -- loading -----------------------------------------------------------------------------------
def load_public_key(data: bytes) -> PublicKey:
    """An RSA or DSA public key from Handle's binary encoding, PEM (SPKI "PUBLIC KEY" or
    PKCS#1 "RSA PUBLIC KEY", surrounding whitespace allowed) or DER SPKI; HandleKeyError
    says why anything else is refused."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise HandleKeyError("MALFORMED", f"a public key is bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data.strip():
        raise HandleKeyError("EMPTY", "the public key is empty")
    if len(data) > MAX_KEY_BYTES:
        raise HandleKeyError("TOO_LARGE", f"the public key is {len(data)} bytes; no RSA or DSA "
                                          f"public key needs more than {MAX_KEY_BYTES}")
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN "):
        return _checked(_from_pem(stripped))
    if data[0] == 0x30:  # DER SEQUENCE: SubjectPublicKeyInfo
        return _checked(_from_spki(data))
    if len(data) >= 4 and int.from_bytes(data[:4], "big") < 64:
        return _checked(_from_handle_binary(data))
    raise HandleKeyError("MALFORMED", "not a public key: expected Handle's binary encoding "
                                      "(RSA_PUB_KEY / DSA_PUB_KEY), PEM or DER")


def _checked(key: PublicKey) -> PublicKey:
    if isinstance(key, RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise HandleKeyError("WEAK_KEY", f"RSA-{key.key_size} key: at least "
                                             f"{MIN_RSA_BITS} bits are required")
        if key.key_size > MAX_RSA_BITS:
            raise HandleKeyError("TOO_LARGE", f"RSA-{key.key_size} key: at most {MAX_RSA_BITS} "
                                              "bits (what OpenSSL and the JDK verify)")
        return key
    if isinstance(key, DSAPublicKey):
        bits = key.parameters().parameter_numbers().p.bit_length()
        if bits < MIN_DSA_P_BITS:
            raise HandleKeyError("WEAK_KEY", f"DSA key with a {bits}-bit p: at least "
                                             f"{MIN_DSA_P_BITS} bits are required")
        return key
    raise HandleKeyError("UNSUPPORTED_KEY_TYPE", f"{type(key).__name__}: {_CANNOT_LOG_IN}")


def _read_array(buf: bytes, off: int, what: str) -> tuple[bytes, int]:
    if off + 4 > len(buf):
        raise HandleKeyError("MALFORMED", f"Handle binary key ends before its {what}")
    n = int.from_bytes(buf[off:off + 4], "big")
    if n > len(buf) - off - 4:
        raise HandleKeyError("MALFORMED", f"Handle binary key: {what} of {n} bytes runs past "
                                          f"the end ({len(buf) - off - 4} left)")
    return buf[off + 4:off + 4 + n], off + 4 + n


def _from_handle_binary(buf: bytes) -> PublicKey:
    # (1) [len]type name, as hdllib's Encoder.writeByteArray writes it
    kind, off = _read_array(buf, 0, "key type")
    if kind in _HANDLE_PRIVATE:
        raise HandleKeyError("PRIVATE_KEY", f"a Handle private key ({kind.decode()}); bind the "
                                            "public key (hdllib writes it beside, e.g. pubkey.bin)")
    if kind == _DH_PUB:
        raise HandleKeyError("UNSUPPORTED_FORMAT", "a Diffie-Hellman public key (Handle session "
                                                   "key exchange) cannot sign a challenge")
    if kind not in (_RSA_PUB, _DSA_PUB):
        if len(kind) <= 4 and int.from_bytes(buf[:4], "big") <= 4:
            # hdllib key files start with an int4 encryption type (0..4), then the key.
            raise HandleKeyError("PRIVATE_KEY", "this looks like a hdllib private key file "
                                                "(privkey.bin); bind the public key (pubkey.bin)")
        shown = kind.decode() if all(32 < c < 127 for c in kind) else kind[:16].hex()
        raise HandleKeyError("MALFORMED", f"unknown Handle key type {shown!r} (expected "
                                          "RSA_PUB_KEY or DSA_PUB_KEY)")
    # (2) int2 flags, reserved: hdllib writes 0 and never reads them
    if off + 2 > len(buf):
        raise HandleKeyError("MALFORMED", "Handle binary key ends before its flags")
    off += 2
    # (3) the numbers, each [len] big-endian, read unsigned (Java's new BigInteger(1, bytes))
    names = ("exponent", "modulus") if kind == _RSA_PUB else ("q", "p", "g", "y")
    nums = {}
    for name in names:
        raw, off = _read_array(buf, off, name)
        nums[name] = int.from_bytes(raw, "big")
    if kind == _RSA_PUB and buf[off:] == _HDLLIB_RSA_PAD:
        off += len(_HDLLIB_RSA_PAD)
    if off != len(buf):
        raise HandleKeyError("TRAILING_BYTES", f"{len(buf) - off} bytes after the end of the "
                                               f"{kind.decode()} key")
    if kind == _RSA_PUB and nums["exponent"] > nums["modulus"] > 0:
        raise HandleKeyError("BAD_PARAMETERS", "RSA_PUB_KEY with an exponent larger than its "
                                               "modulus: hdllib writes the exponent first, then "
                                               "the modulus")
    if kind == _DSA_PUB and nums["p"].bit_length() < MIN_DSA_P_BITS:
        raise HandleKeyError("WEAK_KEY", f"DSA key with a {nums['p'].bit_length()}-bit p: at "
                                         f"least {MIN_DSA_P_BITS} bits are required")
    try:
        if kind == _RSA_PUB:
            return rsa.RSAPublicNumbers(nums["exponent"], nums["modulus"]).public_key()
        params = dsa.DSAParameterNumbers(nums["p"], nums["q"], nums["g"])
        return dsa.DSAPublicNumbers(nums["y"], params).public_key()
    except ValueError as exc:
        raise HandleKeyError("BAD_PARAMETERS", f"{kind.decode()}: {exc}") from None


def _from_pem(text: bytes) -> PublicKey:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    begin = _PEM_LINE.fullmatch(lines[0])
    end = _PEM_LINE.fullmatch(lines[-1]) if len(lines) > 1 else None
    if begin is None or begin.group(1) != b"BEGIN" or end is None or end.group(1) != b"END" \
            or end.group(2) != begin.group(2):
        raise HandleKeyError("MALFORMED", "PEM without matching BEGIN and END lines (only "
                                          "whitespace may surround a single PEM block)")
    label = begin.group(2).decode()
    body = lines[1:-1]
    if any(_PEM_LINE.fullmatch(ln) for ln in body):
        raise HandleKeyError("MALFORMED", "several PEM blocks; give exactly one public key")
    if "PRIVATE KEY" in label:
        raise HandleKeyError("PRIVATE_KEY", f"a private key (PEM {label}); bind its public key "
                                            "(openssl pkey -in KEY -pubout)")
    if label in ("CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"):
        raise HandleKeyError("UNSUPPORTED_FORMAT", "an X.509 certificate; bind its public key "
                                                   "(openssl x509 -in CERT -pubkey -noout)")
    if label not in ("PUBLIC KEY", "RSA PUBLIC KEY"):
        raise HandleKeyError("UNSUPPORTED_FORMAT", f"PEM {label}: expected PUBLIC KEY or "
                                                   "RSA PUBLIC KEY")
    if not all(_B64_LINE.fullmatch(ln) for ln in body):
        raise HandleKeyError("MALFORMED", f"PEM {label} body is not base64 (encrypted or with "
                                          "headers?)")
    try:
        der = base64.b64decode(b"".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise HandleKeyError("MALFORMED", f"PEM {label} body is not valid base64") from None
    if not der:
        raise HandleKeyError("MALFORMED", f"PEM {label} is empty")
    if label == "PUBLIC KEY":
        return _from_spki(der)
    _der_sequence_end(der, "PKCS#1 RSAPublicKey")
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise HandleKeyError("MALFORMED", "PEM RSA PUBLIC KEY is not a PKCS#1 RSAPublicKey") \
            from None
    if not isinstance(key, RSAPublicKey):
        raise HandleKeyError("MALFORMED", "PEM RSA PUBLIC KEY does not hold an RSA key")
    return key


# -- a little DER, enough to name the key algorithm before asking cryptography ------------------
def _der_header(buf: bytes, off: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `off`."""
    if off + 2 > len(buf):
        raise ValueError("truncated")
    tag, first = buf[off], buf[off + 1]
    off += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or off + n > len(buf):
            raise ValueError("bad length")
        length = int.from_bytes(buf[off:off + n], "big")
        off += n
    if off + length > len(buf):
        raise ValueError("truncated")
    return tag, off, off + length


def _der_sequence_end(der: bytes, what: str) -> None:
    try:
        tag, _, end = _der_header(der, 0)
    except ValueError:
        raise HandleKeyError("MALFORMED", f"{what}: DER is damaged") from None
    if tag != 0x30:
        raise HandleKeyError("MALFORMED", f"{what}: DER does not start with a SEQUENCE")
    if end != len(der):
        raise HandleKeyError("TRAILING_BYTES", f"{what}: {len(der) - end} bytes after the DER")


def _spki_algorithm(der: bytes) -> tuple[bytes, int, bytes]:
    """(algorithm OID, parameters tag (0 if none), parameters content) of an SPKI."""
    try:
        _, start, _ = _der_header(der, 0)              # SubjectPublicKeyInfo SEQUENCE
        tag, a_start, a_end = _der_header(der, start)  # AlgorithmIdentifier SEQUENCE
        if tag != 0x30:
            raise ValueError("no AlgorithmIdentifier")
        tag, o_start, o_end = _der_header(der, a_start)
        if tag != 0x06:
            raise ValueError("no algorithm OID")
        if o_end >= a_end:
            return der[o_start:o_end], 0, b""
        ptag, p_start, p_end = _der_header(der, o_end)
        return der[o_start:o_end], ptag, der[p_start:p_end]
    except ValueError as exc:
        raise HandleKeyError("MALFORMED", f"SubjectPublicKeyInfo is damaged ({exc})") from None


def _dsa_p_bits(params: bytes) -> int:
    """Bit length of p in DSA parameters (SEQUENCE {p, q, g} content), 0 if unreadable."""
    try:
        tag, start, end = _der_header(params, 0)
    except ValueError:
        return 0
    return int.from_bytes(params[start:end], "big").bit_length() if tag == 0x02 else 0


def _from_spki(der: bytes) -> PublicKey:
    _der_sequence_end(der, "SubjectPublicKeyInfo")
    alg, params_tag, params = _spki_algorithm(der)
    if alg == _OID_EC:
        if params_tag == 0x06 and params == _OID_SM2_CURVE:
            raise HandleKeyError("SM2_KEY", "an SM2 (sm2p256v1) key: the ID-SDK can load it but "
                                            "its login asks for SHA256withEC, which no provider "
                                            "has, and hdllib has no EC keys at all; "
                                            + _CANNOT_LOG_IN)
        raise HandleKeyError("UNSUPPORTED_KEY_TYPE", f"an EC key: {_CANNOT_LOG_IN}")
    if alg in _OTHER_ALGS:
        raise HandleKeyError("UNSUPPORTED_KEY_TYPE", f"a key of type {_OTHER_ALGS[alg]}: "
                                                     f"{_CANNOT_LOG_IN}")
    if alg not in (_OID_RSA, _OID_DSA):
        raise HandleKeyError("UNSUPPORTED_KEY_TYPE", f"a key of algorithm OID {_oid_text(alg)}: "
                                                     f"{_CANNOT_LOG_IN}")
    if alg == _OID_DSA and params_tag == 0x30 and 0 < _dsa_p_bits(params) < MIN_DSA_P_BITS:
        # Before cryptography, which refuses such parameters as merely invalid.
        raise HandleKeyError("WEAK_KEY", f"DSA key with a {_dsa_p_bits(params)}-bit p: at least "
                                         f"{MIN_DSA_P_BITS} bits are required")
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise HandleKeyError("MALFORMED", f"SubjectPublicKeyInfo does not hold a valid "
                                          f"{'RSA' if alg == _OID_RSA else 'DSA'} key "
                                          f"({str(exc).split('.')[0]})") from None
    if not isinstance(key, (RSAPublicKey, DSAPublicKey)):
        raise HandleKeyError("UNSUPPORTED_KEY_TYPE", _CANNOT_LOG_IN)
    return key


def _oid_text(raw: bytes) -> str:
    if not raw:
        return "(empty)"
    parts = [str(raw[0] // 40), str(raw[0] % 40)] if raw[0] < 80 else ["2", str(raw[0] - 80)]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(str(value))
            value = 0
    return ".".join(parts)


# -- encoding ----------------------------------------------------------------------------------
def _java_bytes(n: int) -> bytes:
    """BigInteger.toByteArray() of a non-negative n: minimal two's complement, so a leading
    0x00 when the top bit of the first byte would be set."""
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def _array(raw: bytes) -> bytes:
    return len(raw).to_bytes(4, "big") + raw


def handle_key_bytes(key: PublicKey) -> bytes:
    """Handle's binary encoding of `key`, byte for byte what hdllib's
    Util.getBytesFromPublicKey writes: [len]type, int2 flags (0), then RSA exponent, modulus
    and hdllib's four zero bytes, or DSA q, p, g, y."""
    if isinstance(key, RSAPublicKey):
        n = key.public_numbers()
        parts = [_RSA_PUB, None, _java_bytes(n.e), _java_bytes(n.n), b""]
    elif isinstance(key, DSAPublicKey):
        dn = key.public_numbers()
        pn = dn.parameter_numbers
        parts = [_DSA_PUB, None, _java_bytes(pn.q), _java_bytes(pn.p), _java_bytes(pn.g),
                 _java_bytes(dn.y)]
    else:
        raise HandleKeyError("UNSUPPORTED_KEY_TYPE", f"{type(key).__name__}: Handle's binary "
                                                     "encoding has RSA and DSA public keys only")
    return b"".join(b"\0\0" if p is None else _array(p) for p in parts)


# -- signatures --------------------------------------------------------------------------------
def verify_signature(key: PublicKey, hash_name: bytes, signature: bytes, data: bytes) -> bool:
    """Whether `signature` is `key`'s signature of `data` under the hash a challenge answer
    names (RSA: PKCS#1 v1.5; DSA: DER r,s). False, never an exception, for anything wrong."""
    algorithm = _HASHES.get(bytes(hash_name)) if isinstance(
        hash_name, (bytes, bytearray, memoryview)) else None
    if algorithm is None or not isinstance(signature, (bytes, bytearray)) or \
            not isinstance(data, (bytes, bytearray)):
        return False
    try:
        if isinstance(key, RSAPublicKey):
            key.verify(bytes(signature), bytes(data), padding.PKCS1v15(), algorithm())
        elif isinstance(key, DSAPublicKey):
            key.verify(bytes(signature), bytes(data), algorithm())
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def sign_rsa(private: RSAPrivateKey, hash_name: bytes, data: bytes) -> bytes:
    """PKCS#1 v1.5 signature of `data` with the hash `hash_name` names (as in a Handle
    HS_SIGNED credential: "SHA-256" normally, "SHA1" for old peers)."""
    if not isinstance(private, RSAPrivateKey):
        raise HandleKeyError("UNSUPPORTED_KEY_TYPE", f"sign_rsa needs an RSA private key, not "
                                                     f"{type(private).__name__}")
    algorithm = _HASHES.get(bytes(hash_name))
    if algorithm is None:
        raise HandleKeyError("UNSUPPORTED_HASH", f"hash {bytes(hash_name)!r}; one of "
                                                 f"{', '.join(h.decode() for h in _HASHES)}")
    return private.sign(bytes(data), padding.PKCS1v15(), algorithm())
