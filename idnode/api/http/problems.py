"""Domain errors → RFC 9457 problem details, in one place."""
from __future__ import annotations

from typing import Any

import orjson

from idnode.api.http.server import Response
from idnode.core import errors

PROBLEM = b"application/problem+json"

_STATUS: tuple[tuple[type[errors.IdnodeError], int], ...] = (
    (errors.InvalidArgument, 400),
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    (errors.FailedPrecondition, 409),
    (errors.Unauthenticated, 401),
    (errors.PermissionDenied, 403),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
    (errors.RemoteRejected, 502),
)

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
           409: "Conflict", 502: "Bad Gateway", 413: "Content Too Large", 414: "URI Too Long", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}

#: The Handle REST API's responseCode for each HTTP status we answer an identifier with.
HANDLE_CODES = {400: 2, 401: 402, 403: 400, 404: 100, 409: 2, 429: 2, 500: 2, 502: 2, 503: 2}
#: Handle's RC_INVALID_HANDLE, which its REST API answers with HTTP 400 (hdllib
#: AbstractMessage; BaseHandleRequestProcessingServlet.statusCodeFromResponse).
RC_INVALID_HANDLE = 102


def status_of(exc: errors.IdnodeError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def problem(status: int, detail: str, *, reason: str | None = None, instance: str | None = None,
            headers: tuple[tuple[bytes, bytes], ...] = (), **extra: Any) -> Response:
    reason = reason or _TITLES.get(status, "Error").upper().replace(" ", "_")
    body: dict[str, Any] = {
        "type": "urn:idnode:problem:" + reason.lower().replace("_", "-"),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "reason": reason,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    if status == 503:
        headers = (*headers, (b"Retry-After", b"1"))
    return Response(status, orjson.dumps(body), PROBLEM,
                    ((b"Cache-Control", b"no-store"), *headers))


def from_error(exc: errors.IdnodeError, *, instance: str | None = None,
               handle: str | None = None) -> Response:
    """The problem for a domain error; `handle` (the identifier as the client asked for it)
    adds the Handle REST members: responseCode, handle and message."""
    status = status_of(exc)
    extra: dict[str, Any] = {"field": exc.field}
    if isinstance(exc, errors.TemplateViolation):
        extra["violations"] = [{"field": f, "detail": d} for f, d in exc.violations]
    if handle is not None:
        extra["handle"] = handle
        extra["responseCode"] = (RC_INVALID_HANDLE if isinstance(exc, errors.InvalidIdentifier)
                                 else HANDLE_CODES.get(status, 2))
        extra["message"] = exc.message
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if isinstance(exc, errors.RateLimited):
        headers = ((b"Retry-After", str(max(1, round(exc.retry_after + 0.5))).encode()),)
    elif isinstance(exc, errors.Unauthenticated):
        headers = ((b"WWW-Authenticate", b'Bearer realm="idnode"'),)
    return problem(status, exc.message, reason=exc.reason, instance=instance, headers=headers,
                   **extra)
