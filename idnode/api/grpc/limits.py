"""Limits every gRPC call passes before its message is parsed.

gRPC hands a servicer a parsed message: a 64 MB batch costs its parse before anyone has
looked at who sent it. This interceptor runs first, on the call's metadata and its raw bytes:
- a write without a credential is refused at once, and one with a bearer key is
  authenticated before its message is parsed (its rights are checked again, in core);
- writes are rate-limited per credential and per client address;
- messages from callers without a credential are held to a much smaller size.
The number of calls served at once is capped by the server itself (maximum_concurrent_rpcs).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from idnode.api.grpc.auth import bearer_token, peer_host
from idnode.api.grpc.status import to_status
from idnode.api.ratelimit import RateLimiter
from idnode.core.auth import Authenticator, Principal
from idnode.core.errors import IdnodeError, RateLimited, TooLarge, Unauthenticated
from idnode.metrics import NodeMetrics

#: Calls that change something. Admin.GetTemplate reads, and is open to every caller.
WRITES = frozenset({
    "/idnode.v1.Registry/RegisterBatch", "/idnode.v1.Registry/UpdateValues",
    "/idnode.v1.Registry/Delete", "/idnode.v1.Trace/AppendEvents",
    "/idnode.v1.Admin/CreateEnterprise", "/idnode.v1.Admin/AllocatePrefix",
    "/idnode.v1.Admin/SetPrefixStatus", "/idnode.v1.Admin/IssueKey",
    "/idnode.v1.Admin/RotateKey", "/idnode.v1.Admin/RevokeKey",
    "/idnode.v1.Admin/SetTemplate"})


@dataclass(frozen=True, slots=True)
class CallLimits:
    #: Writes a second per credential and per client address (0: no limit), with bursts.
    write_rate: float = 50.0
    write_burst: float = 100.0
    address_write_rate: float = 100.0
    address_write_burst: float = 200.0
    #: The largest message a caller without a credential may send.
    anonymous_max_bytes: int = 1 << 20
    #: Whether a client certificate may stand in for a bearer key (mTLS with a client CA):
    #: then a write without a key is not refused here, the servicer decides.
    certificates: bool = False


class LimitsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticator: Authenticator, metrics: NodeMetrics,
                 limits: CallLimits) -> None:
        self.authenticator = authenticator
        self.metrics = metrics
        self.limits = limits
        self.per_key = (RateLimiter(limits.write_rate, limits.write_burst)
                        if limits.write_rate > 0 else None)
        self.per_address = (RateLimiter(limits.address_write_rate, limits.address_write_burst)
                            if limits.address_write_rate > 0 else None)

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler  # health and reflection streams: nothing to guard
        method = details.method
        write = method in WRITES
        try:
            token = bearer_token(details.invocation_metadata or ())
        except IdnodeError as exc:
            return self._refuse(method, exc)
        principal: Principal | None = None
        if token is not None and write:
            try:
                principal = await self.authenticator.from_token(token)
            except IdnodeError as exc:
                return self._refuse(method, exc)
        elif token is None and write and not self.limits.certificates:
            return self._refuse(method, Unauthenticated(
                "writing requires a credential (authorization: Bearer <api key>)",
                reason="CREDENTIAL_REQUIRED"))
        return self._guarded(handler, method, anonymous=token is None, principal=principal)

    def _guarded(self, handler: grpc.RpcMethodHandler, method: str, *, anonymous: bool,
                 principal: Principal | None) -> grpc.RpcMethodHandler:
        parse = handler.request_deserializer
        behaviour = handler.unary_unary
        limits = self.limits

        async def guarded(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            # The message arrives unparsed (see below): first the limits, then the parse.
            if anonymous and len(raw) > limits.anonymous_max_bytes:
                await self._abort(context, method, TooLarge(
                    f"a message of {len(raw)} bytes; without a credential at most "
                    f"{limits.anonymous_max_bytes}", field="message"))
            if principal is not None:
                # The address's budget is spent only by calls the credential's allows.
                wait = self.per_key.take(principal.key_id) if self.per_key is not None else 0.0
                if not wait and self.per_address is not None:
                    wait = self.per_address.take(peer_host(context.peer() or ""))
                if wait > 0:
                    await self._abort(context, method, RateLimited(
                        f"too many writes; retry in {wait:.2f} s", retry_after=wait))
            return await behaviour(parse(raw) if parse is not None else raw, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=None,
            response_serializer=handler.response_serializer)

    def _refuse(self, method: str, exc: IdnodeError) -> grpc.RpcMethodHandler:
        async def refuse(_raw: bytes, context: grpc.aio.ServicerContext) -> None:
            await self._abort(context, method, exc)
        # No deserializer: a refused message is never parsed.
        return grpc.unary_unary_rpc_method_handler(refuse)

    async def _abort(self, context: grpc.aio.ServicerContext, method: str,
                     exc: IdnodeError) -> None:
        status = to_status(exc)
        self.metrics.grpc_requests.inc((method.rsplit("/", 1)[-1], status.code.name))
        trailing = tuple(status.trailing_metadata or ())
        if isinstance(exc, RateLimited):
            trailing += (("retry-after", str(max(1, round(exc.retry_after)))),)
        await context.abort(status.code, status.details, trailing)
