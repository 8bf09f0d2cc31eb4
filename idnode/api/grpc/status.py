"""Domain errors → gRPC status codes with google.rpc details, in one place."""
from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from idnode.core import errors

DOMAIN = "idnode"
#: The first violations a template found go in the details (all are in the HTTP answer):
#: the trailers are bounded (see _clip).
MAX_VIOLATIONS = 8

_CODES: tuple[tuple[type[errors.IdnodeError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RemoteRejected, grpc.StatusCode.UNAVAILABLE),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
)


def code_of(exc: errors.IdnodeError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def to_status(exc: errors.IdnodeError) -> grpc.Status:
    """A status whose details hold ErrorInfo (reason, field, identifier) and, for bad input,
    a BadRequest field violation, so clients can act on the failure without parsing text."""
    code = code_of(exc)
    metadata = {}
    if exc.field:
        metadata["field"] = _clip(exc.field, 200)
    if exc.identifier:
        metadata["identifier"] = _clip(exc.identifier, 200)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=metadata))
    details = [info]
    if isinstance(exc, errors.InvalidArgument) and exc.field:
        # Every violation a template found, so a client fixes a record in one round.
        found = (exc.violations if isinstance(exc, errors.TemplateViolation)
                 else [(exc.field, exc.message)])
        bad = any_pb2.Any()
        bad.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=_clip(f, 100),
                                                        description=_clip(d, 200),
                                                        reason=exc.reason)
            for f, d in found[:MAX_VIOLATIONS]]))
        details.append(bad)
    status = status_pb2.Status(code=getattr(code_pb2, code.name),
                               message=_clip(exc.message, 512), details=details)
    return rpc_status.to_status(status)


def _clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes. Error texts can quote what a client sent,
    and the message and details travel in the trailers, which a gRPC client refuses past
    8 KiB (the call then fails with an unrelated RESOURCE_EXHAUSTED): with these limits the
    worst case (all CJK: grpc-message percent-encodes each byte) stays near 6 KiB."""
    raw = text.encode()
    return text if len(raw) <= limit else raw[:limit - 3].decode(errors="ignore") + "…"
