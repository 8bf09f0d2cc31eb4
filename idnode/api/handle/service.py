"""The Handle/IDIS protocol service: one decoded request in, one reply out, through core.

Two dialects are served. Handle.Net clients (hdllib) authenticate each administrative
request by challenge (402, answered by opcode 200, possibly on a new connection); CAICT's
ID-SDK logs a connection in once (IDIS opcode 2001, then 200 on the same connection) and
sends its writes bare, expecting 408 "log in first" when it has not. Both end in the same
core calls as gRPC, with the same credentials, rules, audit, signing and sync.

Why one module of this length: it is the protocol's dispatch, one short method per opcode
over the same session, authentication and error mapping; the wire format is codec.py, the
servers server.py, and every rule is in core.
"""
from __future__ import annotations

import hashlib
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from idnode.api.handle import codec
from idnode.api.handle.codec import Reply, Request
from idnode.api.handle.convert import text, value_in, wire_values
from idnode.api.handle.site import Site
from idnode.api.ratelimit import RateLimiter
from idnode.core import errors, identifiers
from idnode.core.audit import Actor
from idnode.core.auth import ANONYMOUS, Authenticator, Principal
from idnode.core.challenges import Challenges, new_nonce, new_session_id, verify_answer
from idnode.core.handleform import HandleForms
from idnode.core.records import Record, Value
from idnode.core.registry import RecordInput, Registry
from idnode.core.resolver import Resolved, Resolver
from idnode.crypto.keys import SigningKey
from idnode.crypto.hdlkeys import sign_rsa
from idnode.metrics import NodeMetrics

log = logging.getLogger(__name__)

#: Seconds a response stays valid (clients refuse expired ones); hdllib's default.
EXPIRATION = 43_200
#: Requests that change records.
ADMIN_OPS = frozenset({codec.OC_CREATE_HANDLE, codec.OC_DELETE_HANDLE, codec.OC_ADD_VALUE,
                       codec.OC_REMOVE_VALUE, codec.OC_MODIFY_VALUE})
#: Requests that carry or set authentication, refused on UDP with the writes.
_AUTH_OPS = frozenset({codec.OC_CHALLENGE_ANSWER, codec.OC_IDIS_LOGIN,
                       codec.OC_IDIS_LOGIN_PASSWORD})
_KNOWN_OPS = frozenset({codec.OC_RESOLUTION, codec.OC_GET_SITE_INFO, codec.OC_SESSION_SETUP,
                        codec.OC_SESSION_TERMINATE}) | ADMIN_OPS | _AUTH_OPS
#: Request digests clients may ask a signature to be made with.
_SHA256 = b"SHA-256"
# The hot path (HandleService.hot): envelope and header read in one unpack.
_HOT = struct.Struct(">BBBBiiiiiiIHBBii")
_HOT_MIN = 20 + 24 + 12
_ENV_HEAD = struct.Struct(">BBBBiiii")
_INT = struct.Struct(">i")
_NO_FILTERS = bytes(8)
_NO_CREDENTIAL = (b"", bytes(4))
#: What the hot path does not do: sign, digest, judge trust, or take part in a session.
_NOT_HOT = codec.FLAG_CERT | codec.FLAG_RRDG | codec.FLAG_ENCR | codec.FLAG_TRUSTED_QUERY \
    | codec.FLAG_CONT
_HOT_LABELS = {"udp": ("udp", "1", "1"), "tcp": ("tcp", "1", "1")}


class Refused(Exception):
    """A request answered with a protocol response code (not a domain error)."""

    def __init__(self, rc: int, message: str) -> None:
        super().__init__(message)
        self.rc = rc
        self.message = message


@dataclass(slots=True)
class PendingLogin:
    """An IDIS login's challenge, answered on the same connection."""

    session_id: int
    nonce: bytes
    digest: bytes
    admin: tuple[str, int]
    deadline: float


@dataclass(slots=True)
class Peer:
    """What the service knows of the client a request came from."""

    transport: str
    address: str
    #: Who an IDIS login made this connection act as.
    principal: Principal = ANONYMOUS
    login: PendingLogin | None = None
    #: Talks the ID-SDK's dialect (408 instead of a challenge; no 301).
    idis: bool = False

    @property
    def client(self) -> str:
        return f"hdl+{self.transport}:{self.address}"


@dataclass(slots=True)
class Outgoing:
    """A response ready to be framed: the transport adds the envelope."""

    version: tuple[int, int]
    session_id: int
    request_id: int
    message: bytes
    credential: bytes

    def framed(self) -> bytes:
        return codec.frame(self.version, self.session_id, self.request_id, self.message,
                           self.credential)


def is_idis(env: codec.Envelope) -> bool:
    """The ID-SDK's fingerprint: it writes version 2.3 and suggests 2.10 (hdllib suggests
    2.11 whatever version it writes)."""
    return (env.major, env.minor) == (2, 3) and env.suggested == (2, 10)


class HandleService:
    def __init__(self, resolver: Resolver, registry: Registry, authenticator: Authenticator,
                 challenges: Challenges, site: Site, key: SigningKey | None,
                 metrics: NodeMetrics, *, verify: Callable[[Record], bool] | None = None,
                 password_login: bool = False, login_ttl: float = 60.0,
                 auth_rate: float = 5.0, auth_burst: float = 20.0,
                 forms: HandleForms | None = None) -> None:
        self.resolver = resolver
        self.registry = registry
        self.authenticator = authenticator
        self.challenges = challenges
        self.site = site
        self.key = key
        self.metrics = metrics
        #: Whether a record's signature checks out (IDIS trusted resolution).
        self.verify = verify
        self.password_login = password_login
        self.login_ttl = login_ttl
        #: Challenges and logins a client address may start: a login flood costs the
        #: node a nonce and a database row each, and must not cost more.
        self.auth_limiter = RateLimiter(auth_rate, auth_burst)
        self._hot_count = metrics.handle_requests
        #: The Handle and IDIS signature forms: HS_CERT / HS_SIGNATURE values served with
        #: each record of this node (issue 12; core/handleform.py). Made on a record's first
        #: resolution, which the hot paths leave to `serve`.
        self.forms = forms

    def hot(self, data: bytes, peer: Peer) -> bytes | None:
        """The whole response (envelope, message, credential) to a framed request that
        resolves a cached record with no filters, digest, signature or trust asked for; None
        for anything else (then `serve`). What scanners and recursive resolvers send almost
        always: answered from a message encoded once per record and request shape, with only
        the ids and the expiration written per request."""
        if len(data) < _HOT_MIN:
            return None
        (major, minor, flag_byte, smin, session_id, request_id, _mid, length, opcode, rc,
         flags, _serial, recursion, _res, _exp, body_len) = _HOT.unpack_from(data, 0)
        if (opcode != 1 or rc or flag_byte & 0xE0 or flags & _NOT_HOT or major != 2
                or not 1 <= minor <= 99 or length != len(data) - 20):
            return None
        handle_len = int.from_bytes(data[44:48], "big")
        end = 48 + handle_len
        # no index list, no type list, nothing but an empty credential (or none) after them
        if body_len != handle_len + 12 or data[end:end + 8] != _NO_FILTERS \
                or data[end + 8:] not in _NO_CREDENTIAL:
            return None
        handle = data[48:end]
        try:
            hit = self.resolver.cached(handle.decode("utf-8"))
        except UnicodeDecodeError:
            return None
        if not isinstance(hit, Resolved) or peer.principal is not ANONYMOUS:
            return None
        smaj = flag_byte & 0x03
        version = (smaj, smin) if smaj else (major, minor)
        if version[0] != 2 or version < (major, minor):
            version = (major, minor)
        version = min(version, codec.VERSION)
        if version == (2, 10) and (major, minor) == (2, 3):
            peer.idis = True
        extra = self._extra(hit, peer)
        if extra is None:
            return None
        key = ("hot", handle, version, flags & codec.ECHOED_FLAGS, recursion, len(extra))
        parts = hit.rendered.get(key)
        if parts is None:
            reply = Reply(codec.OC_RESOLUTION, codec.RC_SUCCESS,
                          self._body(handle, hit, False, peer), flags & codec.ECHOED_FLAGS)
            message = codec.encode_message(reply, version, serial=self.site.serial,
                                           recursion=recursion, expiration=0)
            parts = hit.rendered[key] = (message[:16], message[20:] + b"\x00\x00\x00\x00")
        self.resolver.stats.resolved(hit.prefix)
        self._hot_count.inc(_HOT_LABELS[peer.transport])
        head, tail = parts
        return b"".join((_ENV_HEAD.pack(version[0], version[1], codec.VERSION[0],
                                         codec.VERSION[1], session_id, request_id, 0,
                                         len(head) + 4 + len(tail)),
                         head, _INT.pack(int(time.time()) + EXPIRATION), tail))


    def serve(self, req: Request, peer: Peer) -> Outgoing | Awaitable[Outgoing]:
        """The response to `req`: at once when it resolves a cached record anonymously (the
        hot path: no task, no await), else an awaitable."""
        if not peer.idis and is_idis(req.env):
            peer.idis = True
        if req.opcode == codec.OC_RESOLUTION and peer.principal is ANONYMOUS:
            done = self._resolve_cached(req, peer)
            if done is not None:
                return done
        return self._serve(req, peer)

    def _resolve_cached(self, req: Request, peer: Peer) -> Outgoing | None:
        try:
            res = codec.decode_resolution(req.body)
            key = res.handle.decode("utf-8")
        except (codec.ProtocolError, UnicodeDecodeError):
            return None
        # Only valid, normalised identifiers are ever cache keys: a hit needs no parsing.
        hit = self.resolver.cached(key)
        if not isinstance(hit, Resolved) or res.indexes or res.types \
                or not codec.supported((req.env.major, req.env.minor)) \
                or self._extra(hit, peer) is None:
            return None
        self.resolver.stats.resolved(hit.prefix)
        return self._finish(req, peer, self._whole(req, res.handle, hit, False, peer),
                            req.env.session_id)

    async def _serve(self, req: Request, peer: Peer) -> Outgoing:
        session_id = req.env.session_id
        try:
            reply, session_id = await self._dispatch(req, peer, session_id)
        except Refused as exc:
            reply = Reply(req.opcode, exc.rc, codec.error_body(exc.message))
        except errors.IdnodeError as exc:
            reply = Reply(req.opcode, self._rc(exc, peer), codec.error_body(exc.message))
        except codec.ProtocolError as exc:
            reply = Reply(req.opcode, exc.rc, codec.error_body(str(exc)))
        except Exception:
            log.exception("handle request failed opcode=%d client=%s", req.opcode, peer.client)
            reply = Reply(req.opcode, codec.RC_ERROR, codec.error_body("internal error"))
        return self._finish(req, peer, reply, session_id)

    def _finish(self, req: Request, peer: Peer, reply: Reply, session_id: int) -> Outgoing:
        env = req.env
        version = codec.answer_version(env)
        reply.flags |= req.flags & codec.ECHOED_FLAGS
        if reply.digest is None and req.has(codec.FLAG_RRDG):
            reply.digest = codec.request_digest(version, req.signed_part)
        message = codec.encode_message(reply, version, serial=self.site.serial,
                                       recursion=req.recursion,
                                       expiration=int(time.time()) + EXPIRATION)
        credential = b""
        if req.has(codec.FLAG_CERT) and self.key is not None:
            credential = codec.signed_credential(version, session_id, env.request_id, message,
                                                 self._sign)
        self.metrics.handle_requests.inc((
            peer.transport, str(req.opcode) if req.opcode in _KNOWN_OPS else "other",
            str(reply.rc)))
        return Outgoing(version, session_id, env.request_id, message, credential)

    def refusal(self, req: Request, peer: Peer, rc: int, message: str) -> Outgoing:
        """A response that refuses `req` without looking at it further (overload)."""
        version = codec.answer_version(req.env)
        body = codec.encode_message(Reply(req.opcode, rc, codec.error_body(message)), version,
                                    serial=self.site.serial, recursion=req.recursion,
                                    expiration=int(time.time()) + EXPIRATION)
        self.metrics.handle_requests.inc((peer.transport, "other", str(rc)))
        return Outgoing(version, req.env.session_id, req.env.request_id, body, b"")

    def _sign(self, data: bytes) -> tuple[bytes, bytes]:
        assert self.key is not None
        return _SHA256, sign_rsa(self.key.private, _SHA256, data)

    # -- dispatch ------------------------------------------------------------------------------
    async def _dispatch(self, req: Request, peer: Peer, session_id: int) -> tuple[Reply, int]:
        env, op = req.env, req.opcode
        if not codec.supported((env.major, env.minor)):
            raise Refused(codec.RC_PROTOCOL_ERROR, f"protocol version {env.major}.{env.minor} "
                          "is not served here (2.1 to 2.11 are)")
        if env.flags & (codec.ENV_COMPRESSED | codec.ENV_ENCRYPTED):
            raise Refused(codec.RC_OPERATION_NOT_SUPPORTED,
                          "compressed or encrypted messages are not supported")
        if op == codec.OC_RESOLUTION:
            return await self._resolve(req, peer), session_id
        if op == codec.OC_GET_SITE_INFO:
            return Reply(op, codec.RC_SUCCESS, self.site.record), session_id
        if peer.transport == "udp" and (op in ADMIN_OPS or op in _AUTH_OPS):
            raise Refused(codec.RC_OPERATION_NOT_SUPPORTED,
                          "the UDP interface is query-only (as HS_SITE says): log in and "
                          "administer over TCP")
        if op in ADMIN_OPS:
            if peer.principal is ANONYMOUS:
                return await self._challenge(req, peer)
            return await self._administer(req, peer.principal, peer), session_id
        if op == codec.OC_CHALLENGE_ANSWER:
            return await self._answer(req, peer), session_id
        if op == codec.OC_IDIS_LOGIN:
            return self._login(req, peer)
        if op == codec.OC_IDIS_LOGIN_PASSWORD:
            return await self._password_login(req, peer), session_id
        if op in (codec.OC_SESSION_SETUP, codec.OC_SESSION_TERMINATE):
            raise Refused(codec.RC_OPERATION_NOT_SUPPORTED, "sessions (opcodes 400-402) are "
                          "not supported: each administrative request is challenged")
        raise Refused(codec.RC_OPERATION_NOT_SUPPORTED, f"opcode {op} is not supported")

    # -- resolution ----------------------------------------------------------------------------
    async def _resolve(self, req: Request, peer: Peer) -> Reply:
        res = codec.decode_resolution(req.body)
        ident = identifiers.parse(text(res.handle, "handle", field="identifier"))
        entry = await self.resolver.lookup(ident)
        if entry is None:
            raise errors.IdentifierNotFound(f"identifier {ident} is not registered",
                                            identifier=str(ident))
        record = entry.record
        private = (not req.has(codec.FLAG_PUBL) and peer.principal is not ANONYMOUS
                   and await self.resolver.sees_private(peer.principal, record.identifier))
        if self.forms is not None:
            # The node's signature values are values of the record as served: filters see
            # them (hdllib fetches a certificate of a chain by its index).
            await self.forms.values(record, entry.rendered)
            record = self.forms.served(record, self._extra(entry, peer) or ())
        if res.indexes or res.types:
            values = record.select(
                frozenset(text(t, "type", field="types") for t in res.types) or None,
                frozenset(res.indexes) or None, private=private)
            if not values and record.values:
                raise Refused(codec.RC_VALUES_NOT_FOUND, "no value matches the indexes and "
                              "types asked for")
            return self._reply(req, entry, codec.resolution_body(res.handle,
                                                                  wire_values(values)))
        return self._whole(req, res.handle, entry, private, peer)

    def _whole(self, req: Request, handle: bytes, entry: Resolved, private: bool,
               peer: Peer) -> Reply:
        return self._reply(req, entry, self._body(handle, entry, private, peer))

    def _extra(self, entry: Resolved, peer: Peer) -> tuple[Value, ...] | None:
        """The node's signature values of a cache entry; None while they are not made yet.
        Not for the ID-SDK over UDP: they make an answer several datagrams long, which it
        reads unreliably, and it checks no HS_SIGNATURE (over TCP it gets them)."""
        if self.forms is None or (peer.idis and peer.transport == "udp"):
            return ()
        return self.forms.cached(entry.rendered)

    def _body(self, handle: bytes, entry: Resolved, private: bool, peer: Peer) -> bytes:
        # Whole records are what scanners ask for: encoded once per cache entry.
        extra = self._extra(entry, peer) or ()
        key = ("hdl", handle, private, len(extra))
        body = entry.rendered.get(key)
        if body is None:
            values = entry.record.select(None, None, private=private) + tuple(extra)
            body = entry.rendered[key] = codec.resolution_body(handle, wire_values(values))
        return body

    def _reply(self, req: Request, entry: Resolved, body: bytes) -> Reply:
        flags = 0
        if req.has(codec.FLAG_TRUSTED_QUERY):
            flags = codec.FLAG_TRUSTED_QUERY
            if self._trusted(entry.rendered, entry.record):
                flags |= codec.FLAG_TRUSTED_RESULT
        return Reply(codec.OC_RESOLUTION, codec.RC_SUCCESS, body, flags)

    def _trusted(self, rendered: dict[object, object], record: Record) -> bool:
        if self.verify is None:
            return False
        known = rendered.get("trusted")
        if known is None:
            known = rendered["trusted"] = self.verify(record)
        return bool(known)

    # -- administration ------------------------------------------------------------------------
    async def _administer(self, req: Request, principal: Principal, peer: Peer) -> Reply:
        actor = Actor(principal, peer.client)
        op = req.opcode
        if op == codec.OC_REMOVE_VALUE:
            handle, indexes = codec.decode_remove(req.body)
            await self.registry.remove_values(actor, _identifier(handle), indexes)
        elif op == codec.OC_DELETE_HANDLE:
            await self.registry.delete(actor, _identifier(codec.decode_handle(req.body)))
        else:
            handle, wire = codec.decode_values_request(req.body)
            name = _identifier(handle)
            values = [value_in(v, i) for i, v in enumerate(wire)]
            if op == codec.OC_CREATE_HANDLE:
                if req.has(codec.FLAG_MINT):
                    raise Refused(codec.RC_OPERATION_NOT_SUPPORTED,
                                  "minting suffixes is not supported: name the identifier")
                # A key unique to this request: a create repeated later (after a delete)
                # is a new registration, not a replay of the first.
                key = f"hdl:{req.env.request_id:08x}:{hashlib.sha256(req.body).hexdigest()[:32]}"
                try:
                    await self.registry.register_batch(actor, key, [RecordInput(name, values)])
                except errors.AlreadyExists:
                    if not req.has(codec.FLAG_OVRW):
                        raise errors.AlreadyExists(f"identifier {name} is already registered",
                                                   identifier=name) from None
                    await self.registry.update_values(actor, name, values)
                return Reply(op, codec.RC_SUCCESS, codec.str_field(handle))
            if op == codec.OC_ADD_VALUE:
                await self.registry.add_values(actor, name, values)
            else:
                await self.registry.modify_values(actor, name, values)
        return Reply(op, codec.RC_SUCCESS, b"")

    async def _challenge(self, req: Request, peer: Peer) -> tuple[Reply, int]:
        """An administrative request without a login: the ID-SDK is told to log in first;
        a Handle client is challenged, and its answer (on any connection) carries it out."""
        if peer.idis:
            raise Refused(codec.RC_IDIS_LOGIN_FIRST,
                          "log in first (opcode 2001) to create, change or delete identifiers")
        self._limit(peer)
        digest = codec.request_digest(codec.answer_version(req.env), req.signed_part)
        challenge = await self.challenges.issue(codec.pack_request(req), digest[1], peer.client)
        return Reply(req.opcode, codec.RC_AUTHENTICATION_NEEDED,
                     codec.challenge_body(challenge.nonce), digest=digest), challenge.session_id

    async def _answer(self, req: Request, peer: Peer) -> Reply:
        answer = codec.decode_challenge_answer(req.body)
        admin = text(answer.admin_handle, "admin handle", field="identifier")
        login = peer.login
        if login is not None and login.session_id == req.env.session_id:
            peer.login = None
            if time.monotonic() > login.deadline:
                raise Refused(codec.RC_AUTHEN_TIMEOUT, "the login challenge has expired")
            if (admin, answer.admin_index) != login.admin:
                raise Refused(codec.RC_AUTHENTICATION_FAILED,
                              "the answer names another admin than the login")
            peer.principal = await verify_answer(
                self.authenticator, answer.auth_type, admin, answer.admin_index,
                answer.hash_name, answer.signature, login.nonce, login.digest)
            log.info("handle login admin=%d:%s key=%s client=%s", answer.admin_index, admin,
                     peer.principal.key_id, peer.client)
            return Reply(codec.OC_IDIS_LOGIN, codec.RC_SUCCESS, b"")
        principal, raw = await self.challenges.answer(
            req.env.session_id, answer.auth_type, admin, answer.admin_index, answer.hash_name,
            answer.signature)
        original = codec.unpack_request(raw)
        if original.opcode not in ADMIN_OPS:
            raise Refused(codec.RC_ERROR, "the challenged request is not administrative")
        reply = await self._administer(original, principal, peer)
        return reply

    def _login(self, req: Request, peer: Peer) -> tuple[Reply, int]:
        peer.idis = True
        if peer.principal is not ANONYMOUS:
            raise Refused(codec.RC_IDIS_ALREADY_LOGGED_IN,
                          f"this connection is already logged in ({peer.principal.key_id})")
        handle, index = codec.decode_login(req.body)
        admin = text(handle, "admin handle", field="identifier")
        self._limit(peer)
        digest = codec.request_digest(codec.answer_version(req.env), req.signed_part)
        nonce, session_id = new_nonce(), new_session_id()
        peer.login = PendingLogin(session_id, nonce, digest[1], (admin, index),
                                  time.monotonic() + self.login_ttl)
        return Reply(codec.OC_IDIS_LOGIN, codec.RC_AUTHENTICATION_NEEDED,
                     codec.challenge_body(nonce), digest=digest), session_id

    async def _password_login(self, req: Request, peer: Peer) -> Reply:
        peer.idis = True
        if not self.password_login:
            raise Refused(codec.RC_OPERATION_NOT_SUPPORTED,
                          "password login sends the password in clear text and is switched "
                          "off here (handle_password_login); log in with a key (opcode 2001)")
        if peer.principal is not ANONYMOUS:
            raise Refused(codec.RC_IDIS_ALREADY_LOGGED_IN,
                          f"this connection is already logged in ({peer.principal.key_id})")
        self._limit(peer)
        user, password = codec.decode_password_login(req.body)
        principal = await self.authenticator.from_token(text(password, "password",
                                                             field="password"))
        if principal.key_id != text(user, "user", field="user"):
            raise errors.Unauthenticated("the user is the API key's id, the password the key",
                                         reason="INVALID_CREDENTIAL")
        peer.principal = principal
        # The ID-SDK reads a password login's answer as a resolution's: the user, no values.
        return Reply(req.opcode, codec.RC_SUCCESS, codec.resolution_body(user, ()))

    def _limit(self, peer: Peer) -> None:
        if self.auth_limiter.take(peer.address) > 0:
            self.metrics.handle_refused.inc((peer.transport, "auth_rate"))
            raise Refused(codec.RC_SERVER_TOO_BUSY, "too many logins and challenges from "
                          "this address; try again shortly")

    @staticmethod
    def _rc(exc: errors.IdnodeError, peer: Peer) -> int:
        """Domain errors as Handle response codes, once, here."""
        if isinstance(exc, errors.InvalidIdentifier):
            return codec.RC_INVALID_HANDLE
        if isinstance(exc, errors.ValuesNotFound):
            return codec.RC_VALUES_NOT_FOUND
        if isinstance(exc, errors.PrefixNotFound):
            # The ID-SDK knows no 301 ("not this server"): to it, the identifier is not here.
            return codec.RC_HANDLE_NOT_FOUND if peer.idis else codec.RC_SERVER_NOT_RESP
        if isinstance(exc, errors.NotFound):
            return codec.RC_HANDLE_NOT_FOUND
        if isinstance(exc, errors.ValueAlreadyExists):
            return codec.RC_VALUE_ALREADY_EXISTS
        if isinstance(exc, errors.AlreadyExists):
            return codec.RC_HANDLE_ALREADY_EXISTS
        if isinstance(exc, errors.InvalidArgument):
            return codec.RC_INVALID_VALUE
        if isinstance(exc, errors.Unauthenticated):
            return (codec.RC_AUTHEN_TIMEOUT if exc.reason == "CHALLENGE_UNKNOWN"
                    else codec.RC_AUTHENTICATION_FAILED)
        if isinstance(exc, (errors.PermissionDenied, errors.FailedPrecondition)):
            return codec.RC_INSUFFICIENT_PERMISSIONS
        if isinstance(exc, (errors.RateLimited, errors.Unavailable)):
            return codec.RC_SERVER_TOO_BUSY
        return codec.RC_ERROR


def _identifier(handle: bytes) -> str:
    return text(handle, "handle", field="identifier")
