"""The Handle 2.x wire format (RFC 3652; HANDLE.NET protocol 2.11) with CAICT's IDIS additions.

Envelope, header, request bodies, response bodies, values, site info, admin records and the
HS_SIGNED credential, as hdllib 9.2 (net.handle.hdllib.Encoder) and the ID-SDK 2.0.3
(convertor/*) write and read them. Pure functions over bytes: no I/O, no rules. Everything a
client sends is bounded before it is allocated; a malformed message raises ProtocolError.

Why one module of this length: it is one wire format, read and written, and each encoder sits
beside its decoder so that the two are checked against each other and against hdllib's
Encoder in one reading; the pieces share the bounded reader and the value encoding.
"""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from idnode.core.hsvalues import ALL_PERMISSIONS, admin_data

# -- sizes and limits (hdllib Common) ----------------------------------------------------------
ENVELOPE_SIZE = 20
HEADER_SIZE = 24
#: The largest message (header + body + credential) either kind of client accepts.
MAX_MESSAGE = 262_144
UDP_PACKET = 512
#: Payload bytes per UDP datagram: clients place packet n at n * 492.
UDP_PAYLOAD = UDP_PACKET - ENVELOPE_SIZE
MAX_HANDLE = 2048
MAX_VALUES = 2048
NONCE_SIZE = 16

#: The newest protocol version spoken here, and the oldest accepted.
VERSION = (2, 11)
OLDEST = (2, 1)

# -- opcodes ------------------------------------------------------------------------------------
OC_RESOLUTION = 1
OC_GET_SITE_INFO = 2
OC_CREATE_HANDLE = 100
OC_DELETE_HANDLE = 101
OC_ADD_VALUE = 102
OC_REMOVE_VALUE = 103
OC_MODIFY_VALUE = 104
OC_LIST_HANDLES = 105
OC_CHALLENGE_ANSWER = 200
OC_VERIFY_CHALLENGE = 201
OC_SESSION_SETUP = 400
OC_SESSION_TERMINATE = 401
#: IDIS (ID-SDK) logins: a cleartext password (legacy), and a public-key login that sets
#: the state of the connection it arrives on.
OC_IDIS_LOGIN_PASSWORD = 2000
OC_IDIS_LOGIN = 2001

# -- response codes -------------------------------------------------------------------------------
RC_SUCCESS = 1
RC_ERROR = 2
RC_SERVER_TOO_BUSY = 3
RC_PROTOCOL_ERROR = 4
RC_OPERATION_NOT_SUPPORTED = 5
RC_HANDLE_NOT_FOUND = 100
RC_HANDLE_ALREADY_EXISTS = 101
RC_INVALID_HANDLE = 102
RC_VALUES_NOT_FOUND = 200
RC_VALUE_ALREADY_EXISTS = 201
RC_INVALID_VALUE = 202
RC_SERVER_NOT_RESP = 301
RC_INVALID_ADMIN = 400
RC_INSUFFICIENT_PERMISSIONS = 401
RC_AUTHENTICATION_NEEDED = 402
RC_AUTHENTICATION_FAILED = 403
RC_INVALID_CREDENTIAL = 404
RC_AUTHEN_TIMEOUT = 405
RC_AUTHEN_ERROR = 406
#: IDIS additions, known to the ID-SDK only.
RC_IDIS_ALREADY_LOGGED_IN = 407
RC_IDIS_LOGIN_FIRST = 408
RC_IDIS_ERROR = 3001

# -- header flags ---------------------------------------------------------------------------------
FLAG_AUTH = 0x80000000
FLAG_CERT = 0x40000000
FLAG_ENCR = 0x20000000
FLAG_RECU = 0x10000000
FLAG_CACR = 0x08000000
FLAG_CONT = 0x04000000
FLAG_KPAL = 0x02000000
FLAG_PUBL = 0x01000000
FLAG_RRDG = 0x00800000
FLAG_OVRW = 0x00400000
FLAG_MINT = 0x00200000
FLAG_DNRF = 0x00100000
#: IDIS: "可信解析" asked for (request) and the answer is trustworthy (response).
FLAG_TRUSTED_QUERY = 0x00000002
FLAG_TRUSTED_RESULT = 0x00000001
#: Request flags a response repeats (hdllib AbstractMessage.takeValuesFrom).
ECHOED_FLAGS = FLAG_AUTH | FLAG_CERT | FLAG_CACR | FLAG_PUBL | FLAG_DNRF | FLAG_RECU

ENV_COMPRESSED = 0x80
ENV_ENCRYPTED = 0x40
ENV_TRUNCATED = 0x20

# -- values -----------------------------------------------------------------------------------------
PERM_ADMIN_READ = 0x08
PERM_ADMIN_WRITE = 0x04
PERM_PUBLIC_READ = 0x02
PERM_PUBLIC_WRITE = 0x01
TTL_RELATIVE = 0
TTL_ABSOLUTE = 1

HASH_MD5_OLD = 0
HASH_MD5 = 1
HASH_SHA1 = 2
HASH_SHA256 = 3
_DIGESTS = {HASH_MD5: "md5", HASH_SHA1: "sha1", HASH_SHA256: "sha256"}

# Interface types and protocols of a site's servers.
ST_ADMIN = 1
ST_QUERY = 2
ST_ADMIN_AND_QUERY = 3
SP_UDP = 0
SP_TCP = 1
SP_HTTP = 2

#: Every admin permission bit of an HS_ADMIN value (hdllib Encoder.PERM_*).
ADMIN_ALL_PERMS = ALL_PERMISSIONS

_ENV = struct.Struct(">BBBBiiii")
_HEADER = struct.Struct(">iiIHBBii")
_VALUE_HEAD = struct.Struct(">iIBiB")


class ProtocolError(Exception):
    """A message that cannot be what it claims; `rc` is the response code to answer with."""

    def __init__(self, message: str, rc: int = RC_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.rc = rc


# -- envelope -------------------------------------------------------------------------------------
@dataclass(slots=True)
class Envelope:
    major: int
    minor: int
    #: Envelope flag bits (compressed, encrypted, truncated).
    flags: int
    suggest_major: int
    suggest_minor: int
    session_id: int
    request_id: int
    #: The UDP packet number (0 over TCP).
    message_id: int
    #: Header + body + credential bytes.
    length: int

    @property
    def truncated(self) -> bool:
        return bool(self.flags & ENV_TRUNCATED)

    @property
    def suggested(self) -> tuple[int, int]:
        return self.suggest_major, self.suggest_minor


def decode_envelope(buf: bytes | memoryview) -> Envelope:
    """The envelope at the start of `buf` (at least 20 bytes)."""
    if len(buf) < ENVELOPE_SIZE:
        raise ProtocolError(f"envelope needs {ENVELOPE_SIZE} bytes, got {len(buf)}")
    major, minor, flag_byte, smin, sid, rid, mid, length = _ENV.unpack_from(buf, 0)
    # The low two bits of byte 2 are the suggested major version (RFC 3652 calls the pair
    # "MessageFlag"); a client that suggests nothing can read its own version.
    smaj = flag_byte & 0x03
    if smaj == 0:
        smaj, smin = major, minor
    if not 0 <= length <= MAX_MESSAGE:
        raise ProtocolError(f"message length {length} is outside 0..{MAX_MESSAGE}")
    return Envelope(major, minor, flag_byte & 0xE0, smaj, smin, sid, rid, mid, length)


def encode_envelope(version: tuple[int, int], session_id: int, request_id: int,
                    message_id: int, length: int, *, truncated: bool = False) -> bytes:
    return _ENV.pack(version[0], version[1], (ENV_TRUNCATED if truncated else 0) | VERSION[0],
                     VERSION[1], session_id, request_id, message_id, length)


def supported(version: tuple[int, int]) -> bool:
    return version[0] == 2 and OLDEST[1] <= version[1] <= 99


def answer_version(env: Envelope) -> tuple[int, int]:
    """The version a response is written in: what the client suggests it reads, at most ours
    (hdllib AbstractResponse: the request's suggested version, capped)."""
    suggested = env.suggested
    if suggested[0] != 2 or suggested < (env.major, env.minor):
        suggested = (env.major, env.minor)
    return min(suggested, VERSION)


# -- messages -------------------------------------------------------------------------------------
@dataclass(slots=True)
class Request:
    env: Envelope
    opcode: int
    flags: int
    serial: int
    recursion: int
    expiration: int
    body: bytes
    #: Header + body as received: what the request digest and signatures cover.
    signed_part: bytes
    credential: bytes

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


def decode_request(env: Envelope, message: bytes) -> Request:
    """A request from its message bytes (header, body, optional credential)."""
    if len(message) < HEADER_SIZE:
        raise ProtocolError(f"message of {len(message)} bytes has no room for a header")
    opcode, rc, flags, serial, recursion, _reserved, expiration, body_len = \
        _HEADER.unpack_from(message, 0)
    if rc != 0:
        raise ProtocolError(f"a request carries response code {rc}")
    end = HEADER_SIZE + body_len
    if body_len < 0 or end > len(message):
        raise ProtocolError(f"body length {body_len} overruns the {len(message)}-byte message")
    credential = b""
    rest = len(message) - end
    if rest:
        if rest < 4:
            raise ProtocolError("truncated credential length")
        (cred_len,) = struct.unpack_from(">i", message, end)
        if cred_len < 0 or cred_len != rest - 4:
            raise ProtocolError(f"credential length {cred_len} does not fit the message")
        credential = bytes(message[end + 4:])
    return Request(env, opcode, flags, serial, recursion, expiration,
                   bytes(message[HEADER_SIZE:end]), bytes(message[:end]), credential)


def pack_request(req: Request) -> bytes:
    """A request as bytes again (envelope and message), to be carried out later."""
    e = req.env
    tail = struct.pack(">i", len(req.credential)) + req.credential
    return _ENV.pack(e.major, e.minor, e.flags | (e.suggest_major & 0x03), e.suggest_minor,
                     e.session_id, e.request_id, e.message_id,
                     len(req.signed_part) + len(tail)) + req.signed_part + tail


def unpack_request(raw: bytes) -> Request:
    env = decode_envelope(raw)
    return decode_request(env, raw[ENVELOPE_SIZE:])


def request_digest(version: tuple[int, int], signed_part: bytes) -> tuple[int, bytes]:
    """(hash type, digest) of a request as a response in `version` carries it (RD)."""
    if version >= (2, 7):
        return HASH_SHA256, hashlib.sha256(signed_part).digest()
    if version >= (2, 1):
        return HASH_SHA1, hashlib.sha1(signed_part).digest()
    return HASH_MD5_OLD, hashlib.md5(signed_part).digest()


def digest_prefix(hash_type: int, digest: bytes) -> bytes:
    """The request digest as the first bytes of a response body."""
    if hash_type == HASH_MD5_OLD:
        return _str(digest)
    return bytes([hash_type]) + digest


#: Makes a response's signature: (hash name as sent, signature) over the bytes given.
Signer = Callable[[bytes], tuple[bytes, bytes]]


@dataclass(slots=True)
class Reply:
    """What a response says, before it is framed: the transport adds envelope and credential."""

    opcode: int
    rc: int
    body: bytes
    flags: int = 0
    #: Set for every response to a request that asked for a digest, and for every challenge.
    digest: tuple[int, bytes] | None = None


def encode_message(reply: Reply, version: tuple[int, int], *, serial: int, recursion: int,
                   expiration: int) -> bytes:
    """Header + body of a response (what a request digest or signature covers)."""
    body = reply.body
    flags = reply.flags
    if reply.digest is not None and version >= (2, 1):
        flags |= FLAG_RRDG
        body = digest_prefix(*reply.digest) + body
    return _HEADER.pack(reply.opcode, reply.rc, flags & 0xFFFFFFFF, serial & 0xFFFF,
                        recursion & 0xFF, 0, expiration, len(body)) + body


def signed_credential(version: tuple[int, int], session_id: int, request_id: int,
                      message: bytes, sign: Signer) -> bytes:
    """The HS_SIGNED credential section (hdllib AbstractMessage.signMessage(Signature)): from
    2.6 on the signature also covers the versions and ids, so it cannot be replayed onto
    another request."""
    signed = b""
    if version == (2, 6):
        # hdllib 2.6 wrote each id over the last (its "painful bug"): the versions, the
        # session id's first two bytes, the counter, and six zero bytes.
        signed = bytes(version) + struct.pack(">i", session_id)[:2] + bytes(10)
    elif version >= (2, 7):
        parts = bytes(version)
        if version >= (2, 8):
            parts += bytes(VERSION)
        signed = parts + struct.pack(">iii", session_id, request_id, 0)
    hash_name, signature = sign(signed + message)
    section = _str(hash_name) + _str(signature)
    return (b"\x00\x00\x00\x00" + _str(b"") + struct.pack(">i", 0) + _str(b"HS_SIGNED")
            + struct.pack(">i", len(section)) + section)


def frame(version: tuple[int, int], session_id: int, request_id: int, message: bytes,
          credential: bytes = b"") -> bytes:
    """A whole TCP response: envelope, header + body, credential (length-prefixed)."""
    tail = struct.pack(">i", len(credential)) + credential
    return encode_envelope(version, session_id, request_id, 0,
                           len(message) + len(tail)) + message + tail


def split_udp(response: bytes) -> list[bytes]:
    """A framed response (`frame`) as UDP datagrams: 492 payload bytes each, numbered, the
    total length in each envelope, the truncated flag on all when there are several (as
    hdllib and the ID-SDK reassemble them)."""
    if len(response) <= UDP_PACKET:
        return [response]
    major, minor, _f, _s, session_id, request_id, _m, total = _ENV.unpack_from(response, 0)
    payload = memoryview(response)[ENVELOPE_SIZE:]
    return [encode_envelope((major, minor), session_id, request_id, n, total, truncated=True)
            + payload[offset:offset + UDP_PAYLOAD]
            for n, offset in enumerate(range(0, total, UDP_PAYLOAD))]


@dataclass(frozen=True, slots=True)
class Response:
    """A response as a client reads it (idnode's own client: `idnode hdl`)."""

    env: Envelope
    opcode: int
    rc: int
    flags: int
    #: The body after the request digest, if any.
    body: bytes
    digest: bytes
    credential: bytes


def decode_response(env: Envelope, message: bytes) -> Response:
    if len(message) < HEADER_SIZE:
        raise ProtocolError("response shorter than a header")
    opcode, rc, flags, _s, _r, _x, _exp, body_len = _HEADER.unpack_from(message, 0)
    end = HEADER_SIZE + body_len
    if body_len < 0 or end > len(message):
        raise ProtocolError("response body overruns the message")
    body = bytes(message[HEADER_SIZE:end])
    digest = b""
    if flags & FLAG_RRDG and rc != 0:
        size = {HASH_MD5: 16, HASH_SHA1: 20, HASH_SHA256: 32}.get(body[0] if body else -1)
        if size is None:
            raise ProtocolError("unknown request digest type")
        digest, body = body[1:1 + size], body[1 + size:]
    credential = b""
    if len(message) >= end + 4:
        credential = Reader(bytes(message[end:])).bytes_()
    return Response(env, opcode, rc, flags, body, digest, credential)


def decode_resolution_response(body: bytes) -> tuple[bytes, list[HandleValue]]:
    r = Reader(body)
    handle = r.bytes_(MAX_HANDLE)
    values = [read_value(r) for _ in range(r.count(MAX_VALUES))]
    r.end()
    return handle, values


def decode_error(body: bytes) -> str:
    try:
        return Reader(body).bytes_().decode("utf-8", "replace")
    except ProtocolError:
        return ""


# -- reading bodies -------------------------------------------------------------------------------
class Reader:
    """Bounded big-endian reads over a body; every overrun is a ProtocolError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise ProtocolError(f"body ends at byte {len(self.buf)}, {n} more bytes wanted at "
                                f"{self.pos}")

    def int4(self) -> int:
        self._need(4)
        (v,) = struct.unpack_from(">i", self.buf, self.pos)
        self.pos += 4
        return int(v)

    def int2(self) -> int:
        self._need(2)
        (v,) = struct.unpack_from(">H", self.buf, self.pos)
        self.pos += 2
        return int(v)

    def byte(self) -> int:
        self._need(1)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def bytes_(self, limit: int = MAX_MESSAGE) -> bytes:
        n = self.int4()
        if n > limit:
            raise ProtocolError(f"a {n}-byte field where at most {limit} are allowed")
        self._need(n)
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def count(self, limit: int) -> int:
        n = self.int4()
        if not 0 <= n <= limit:
            raise ProtocolError(f"a count of {n} where 0..{limit} are allowed")
        return n

    def ints(self, limit: int = MAX_VALUES) -> list[int]:
        n = self.count(limit)
        self._need(4 * n)
        out = list(struct.unpack_from(f">{n}i", self.buf, self.pos))
        self.pos += 4 * n
        return out

    def strings(self, limit: int = MAX_VALUES) -> list[bytes]:
        return [self.bytes_() for _ in range(self.count(limit))]

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ProtocolError(f"{len(self.buf) - self.pos} unexpected bytes after the body")


@dataclass(frozen=True, slots=True)
class HandleValue:
    index: int
    type: bytes
    data: bytes
    ttl: int = 86400
    ttl_type: int = TTL_RELATIVE
    #: Seconds since the epoch of the value's last change.
    timestamp: int = 0
    permissions: int = PERM_ADMIN_READ | PERM_ADMIN_WRITE | PERM_PUBLIC_READ
    references: tuple[tuple[bytes, int], ...] = ()


def read_value(r: Reader) -> HandleValue:
    index, timestamp, ttl_type, ttl, perms = _read_struct(r, _VALUE_HEAD)
    vtype = r.bytes_()
    data = r.bytes_()
    refs = tuple((r.bytes_(MAX_HANDLE), r.int4()) for _ in range(r.count(MAX_VALUES)))
    return HandleValue(index, vtype, data, ttl, ttl_type, timestamp, perms, refs)


def _read_struct(r: Reader, s: struct.Struct) -> tuple[int, ...]:
    r._need(s.size)
    out = s.unpack_from(r.buf, r.pos)
    r.pos += s.size
    return tuple(out)


def encode_value(v: HandleValue) -> bytes:
    out = [_VALUE_HEAD.pack(v.index, v.timestamp & 0xFFFFFFFF, v.ttl_type, v.ttl, v.permissions),
           _str(v.type), _str(v.data), struct.pack(">i", len(v.references))]
    out += [_str(h) + struct.pack(">i", i) for h, i in v.references]
    return b"".join(out)


def value_digest_part(v: HandleValue) -> bytes:
    """A value's encoding from its TTL type on: what HS_SIGNATURE digests cover."""
    return encode_value(v)[8:]


# -- request bodies -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Resolution:
    handle: bytes
    indexes: tuple[int, ...]
    types: tuple[bytes, ...]


def decode_resolution(body: bytes) -> Resolution:
    r = Reader(body)
    handle = r.bytes_(MAX_HANDLE)
    indexes = tuple(r.ints())
    types = tuple(r.strings())
    r.end()
    return Resolution(handle, indexes, types)


def decode_handle(body: bytes) -> bytes:
    """The handle of a body that holds only a handle (delete, site info)."""
    r = Reader(body)
    handle = r.bytes_(MAX_HANDLE)
    r.end()
    return handle


def decode_values_request(body: bytes) -> tuple[bytes, list[HandleValue]]:
    """Create, add and modify: a handle and its values."""
    r = Reader(body)
    handle = r.bytes_(MAX_HANDLE)
    values = [read_value(r) for _ in range(r.count(MAX_VALUES))]
    r.end()
    return handle, values


def decode_remove(body: bytes) -> tuple[bytes, list[int]]:
    r = Reader(body)
    handle = r.bytes_(MAX_HANDLE)
    indexes = r.ints()
    r.end()
    return handle, indexes


def decode_login(body: bytes) -> tuple[bytes, int]:
    """IDIS opcode 2001: the admin identity (handle, index) that will answer a challenge.
    The SDK writes a trailing byte array in some versions; it carries nothing we use."""
    r = Reader(body)
    handle = r.bytes_(MAX_HANDLE)
    index = r.int4()
    return handle, index


def decode_password_login(body: bytes) -> tuple[bytes, bytes]:
    """IDIS opcode 2000, laid out like a resolution: user, no indexes, [password]."""
    res = decode_resolution(body)
    return res.handle, res.types[0] if res.types else b""


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    auth_type: bytes
    admin_handle: bytes
    admin_index: int
    hash_name: bytes
    signature: bytes


def decode_challenge_answer(body: bytes) -> ChallengeAnswer:
    r = Reader(body)
    auth_type = r.bytes_(64)
    handle = r.bytes_(MAX_HANDLE)
    index = r.int4()
    signed = Reader(r.bytes_(16_384))
    r.end()
    hash_name = signed.bytes_(64)
    signature = signed.bytes_(8192)
    return ChallengeAnswer(auth_type, handle, index, hash_name, signature)


# -- response bodies ------------------------------------------------------------------------------
def _str(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


def str_field(b: bytes) -> bytes:
    """A length-prefixed byte string."""
    return _str(b)


def int_list(values: Sequence[int]) -> bytes:
    return struct.pack(f">i{len(values)}i", len(values), *values)


def str_list(values: Sequence[bytes]) -> bytes:
    return struct.pack(">i", len(values)) + b"".join(_str(v) for v in values)


def resolution_body(handle: bytes, encoded_values: Sequence[bytes]) -> bytes:
    return _str(handle) + struct.pack(">i", len(encoded_values)) + b"".join(encoded_values)


def error_body(message: str) -> bytes:
    return _str(message.encode("utf-8"))


def challenge_body(nonce: bytes) -> bytes:
    return _str(nonce)


@dataclass(frozen=True, slots=True)
class Interface:
    kind: int        # ST_*
    protocol: int    # SP_*
    port: int


@dataclass(frozen=True, slots=True)
class Server:
    server_id: int
    #: 16 bytes: an IPv6 address, or an IPv4 address in its last four bytes.
    address: bytes
    public_key: bytes
    interfaces: tuple[Interface, ...]


def encode_site(serial: int, servers: Sequence[Server],
                attributes: Sequence[tuple[bytes, bytes]] = (), *, primary: bool = True,
                hash_option: int = 0, version: tuple[int, int] = VERSION) -> bytes:
    """An HS_SITE value's data (hdllib Encoder.encodeSiteInfoRecord)."""
    out = [struct.pack(">HBBHBB", 1, version[0], version[1], serial & 0xFFFF,
                       0x80 if primary else 0, hash_option), _str(b""),
           struct.pack(">i", len(attributes))]
    out += [_str(name) + _str(value) for name, value in attributes]
    out.append(struct.pack(">i", len(servers)))
    for s in servers:
        if len(s.address) != 16:
            raise ValueError("a server address is 16 bytes")
        out += [struct.pack(">i", s.server_id), s.address, _str(s.public_key),
                struct.pack(">i", len(s.interfaces))]
        out += [struct.pack(">BBi", i.kind, i.protocol, i.port) for i in s.interfaces]
    return b"".join(out)


def encode_admin(handle: bytes, index: int, permissions: int = ADMIN_ALL_PERMS) -> bytes:
    """An HS_ADMIN value's data: permissions, admin handle, admin index."""
    return admin_data(handle.decode("utf-8"), index, permissions)


def decode_admin(data: bytes) -> tuple[int, bytes, int]:
    r = Reader(data)
    perms = r.int2()
    handle = r.bytes_(MAX_HANDLE)
    index = r.int4()
    return perms, handle, index
