import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Enterprise(_message.Message):
    __slots__ = ("id", "name", "uscc", "contact", "prefixes", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USCC_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    uscc: str
    contact: str
    prefixes: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., uscc: _Optional[str] = ..., contact: _Optional[str] = ..., prefixes: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateEnterpriseRequest(_message.Message):
    __slots__ = ("name", "uscc", "contact")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USCC_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    name: str
    uscc: str
    contact: str
    def __init__(self, name: _Optional[str] = ..., uscc: _Optional[str] = ..., contact: _Optional[str] = ...) -> None: ...

class ListEnterprisesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEnterprisesResponse(_message.Message):
    __slots__ = ("enterprises",)
    ENTERPRISES_FIELD_NUMBER: _ClassVar[int]
    enterprises: _containers.RepeatedCompositeFieldContainer[Enterprise]
    def __init__(self, enterprises: _Optional[_Iterable[_Union[Enterprise, _Mapping]]] = ...) -> None: ...

class AllocatePrefixRequest(_message.Message):
    __slots__ = ("enterprise_id", "prefix")
    ENTERPRISE_ID_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    enterprise_id: int
    prefix: str
    def __init__(self, enterprise_id: _Optional[int] = ..., prefix: _Optional[str] = ...) -> None: ...

class AllocatePrefixResponse(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class SetPrefixStatusRequest(_message.Message):
    __slots__ = ("prefix", "status", "refuse_resolution")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REFUSE_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    status: str
    refuse_resolution: bool
    def __init__(self, prefix: _Optional[str] = ..., status: _Optional[str] = ..., refuse_resolution: _Optional[bool] = ...) -> None: ...

class SetPrefixStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Credential(_message.Message):
    __slots__ = ("key_id", "role", "enterprise_id", "scopes", "prefixes", "label", "has_certificate", "created_at", "expires_at", "revoked_at", "handle_admin")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ENTERPRISE_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    HAS_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    HANDLE_ADMIN_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    role: str
    enterprise_id: int
    scopes: _containers.RepeatedScalarFieldContainer[str]
    prefixes: _containers.RepeatedScalarFieldContainer[str]
    label: str
    has_certificate: bool
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    handle_admin: str
    def __init__(self, key_id: _Optional[str] = ..., role: _Optional[str] = ..., enterprise_id: _Optional[int] = ..., scopes: _Optional[_Iterable[str]] = ..., prefixes: _Optional[_Iterable[str]] = ..., label: _Optional[str] = ..., has_certificate: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., handle_admin: _Optional[str] = ...) -> None: ...

class IssueKeyRequest(_message.Message):
    __slots__ = ("enterprise_id", "scopes", "prefixes", "label", "expires_in_days", "client_certificate_pem", "handle_admin", "public_key")
    ENTERPRISE_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_DAYS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    HANDLE_ADMIN_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    enterprise_id: int
    scopes: _containers.RepeatedScalarFieldContainer[str]
    prefixes: _containers.RepeatedScalarFieldContainer[str]
    label: str
    expires_in_days: int
    client_certificate_pem: str
    handle_admin: str
    public_key: bytes
    def __init__(self, enterprise_id: _Optional[int] = ..., scopes: _Optional[_Iterable[str]] = ..., prefixes: _Optional[_Iterable[str]] = ..., label: _Optional[str] = ..., expires_in_days: _Optional[int] = ..., client_certificate_pem: _Optional[str] = ..., handle_admin: _Optional[str] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class IssueKeyResponse(_message.Message):
    __slots__ = ("credential", "api_key")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    api_key: str
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ..., api_key: _Optional[str] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("key_id", "grace_seconds")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    grace_seconds: int
    def __init__(self, key_id: _Optional[str] = ..., grace_seconds: _Optional[int] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class RevokeKeyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("enterprise_id",)
    ENTERPRISE_ID_FIELD_NUMBER: _ClassVar[int]
    enterprise_id: int
    def __init__(self, enterprise_id: _Optional[int] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("credentials",)
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    credentials: _containers.RepeatedCompositeFieldContainer[Credential]
    def __init__(self, credentials: _Optional[_Iterable[_Union[Credential, _Mapping]]] = ...) -> None: ...

class SetTemplateRequest(_message.Message):
    __slots__ = ("prefix", "name", "schema_json")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    name: str
    schema_json: str
    def __init__(self, prefix: _Optional[str] = ..., name: _Optional[str] = ..., schema_json: _Optional[str] = ...) -> None: ...

class SetTemplateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("prefix", "name", "schema_json")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    name: str
    schema_json: str
    def __init__(self, prefix: _Optional[str] = ..., name: _Optional[str] = ..., schema_json: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("id", "at", "actor", "enterprise_id", "client", "action", "target", "prefix", "before_version", "after_version", "detail_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ENTERPRISE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    BEFORE_VERSION_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    at: _timestamp_pb2.Timestamp
    actor: str
    enterprise_id: int
    client: str
    action: str
    target: str
    prefix: str
    before_version: int
    after_version: int
    detail_json: str
    def __init__(self, id: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., enterprise_id: _Optional[int] = ..., client: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., prefix: _Optional[str] = ..., before_version: _Optional[int] = ..., after_version: _Optional[int] = ..., detail_json: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("prefix", "enterprise_id", "after_id", "page_size")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    ENTERPRISE_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    enterprise_id: int
    after_id: int
    page_size: int
    def __init__(self, prefix: _Optional[str] = ..., enterprise_id: _Optional[int] = ..., after_id: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ...) -> None: ...
