"""The domain errors: defined in idnode.model.errors, below both the rules and the stores
(which raise them too); the rules' modules import them from here."""
from __future__ import annotations

from idnode.model.errors import (
    IdnodeError as IdnodeError,
    InvalidArgument as InvalidArgument,
    InvalidIdentifier as InvalidIdentifier,
    InvalidValue as InvalidValue,
    TemplateViolation as TemplateViolation,
    TooLarge as TooLarge,
    NotFound as NotFound,
    IdentifierNotFound as IdentifierNotFound,
    ValuesNotFound as ValuesNotFound,
    PrefixNotFound as PrefixNotFound,
    AlreadyExists as AlreadyExists,
    ValueAlreadyExists as ValueAlreadyExists,
    FailedPrecondition as FailedPrecondition,
    Unavailable as Unavailable,
    Unauthenticated as Unauthenticated,
    PermissionDenied as PermissionDenied,
    RateLimited as RateLimited,
    RemoteRejected as RemoteRejected,
)
