"""Domain errors. Each carries a machine-readable reason and the offending field; the API
layers map them to gRPC statuses and RFC 9457 problems once, at the edge."""
from __future__ import annotations


class IdnodeError(Exception):
    """Base of every error a client can cause or observe."""

    #: Stable, machine-readable, UPPER_SNAKE (also the google.rpc.ErrorInfo reason).
    reason: str = "ERROR"

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None,
                 identifier: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.identifier = identifier
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class InvalidArgument(IdnodeError):
    reason = "INVALID_ARGUMENT"


class InvalidIdentifier(InvalidArgument):
    reason = "INVALID_IDENTIFIER"


class InvalidValue(InvalidArgument):
    reason = "INVALID_VALUE"


class TemplateViolation(InvalidValue):
    """Values a template refuses, with every violation found, not only the first: `field` and
    the message name the first; `violations` holds (field, description) for all of them."""

    reason = "TEMPLATE_VIOLATION"

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        field, first = violations[0]
        message = first if len(violations) == 1 else (
            f"{len(violations)} template violations: " + "; ".join(d for _, d in violations))
        super().__init__(message, field=field)
        self.violations = violations


class TooLarge(InvalidArgument):
    """A payload, value or batch over its bound."""

    reason = "TOO_LARGE"


class NotFound(IdnodeError):
    reason = "NOT_FOUND"


class IdentifierNotFound(NotFound):
    reason = "IDENTIFIER_NOT_FOUND"


class ValuesNotFound(NotFound):
    """A value index the operation names is not in the record."""

    reason = "VALUES_NOT_FOUND"


class PrefixNotFound(NotFound):
    """The node does not hold (or no longer serves) the identifier's prefix."""

    reason = "PREFIX_NOT_FOUND"


class AlreadyExists(IdnodeError):
    reason = "ALREADY_EXISTS"


class ValueAlreadyExists(AlreadyExists):
    """A value index that is to be added is already in the record."""

    reason = "VALUE_ALREADY_EXISTS"


class FailedPrecondition(IdnodeError):
    reason = "FAILED_PRECONDITION"


class PrefixesChanged(FailedPrecondition):
    """A batch registered on the expectation that its prefixes were active, held by one
    enterprise and without a template (decided from memory) was not written: one of them no
    longer is. The registry decides again on rows read from the database, so a client never
    sees it."""

    reason = "PREFIXES_CHANGED"


class Unavailable(IdnodeError):
    """A dependency (the database) is not reachable right now; retrying later may work."""

    reason = "UNAVAILABLE"


class Unauthenticated(IdnodeError):
    """No credential, or one that is malformed, unknown, expired or revoked."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(IdnodeError):
    """A valid credential that may not do this."""

    reason = "PERMISSION_DENIED"


class RateLimited(IdnodeError):
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemoteRejected(IdnodeError):
    """Another node answered with something that does not check out (forged, misrouted,
    malformed); served to no one."""

    reason = "REMOTE_RECORD_REJECTED"
