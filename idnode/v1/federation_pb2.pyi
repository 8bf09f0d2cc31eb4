import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node_prefix", "http_base", "grpc_address", "jwks_json", "handle_keys_json")
    NODE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    HTTP_BASE_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    JWKS_JSON_FIELD_NUMBER: _ClassVar[int]
    HANDLE_KEYS_JSON_FIELD_NUMBER: _ClassVar[int]
    node_prefix: str
    http_base: str
    grpc_address: str
    jwks_json: str
    handle_keys_json: str
    def __init__(self, node_prefix: _Optional[str] = ..., http_base: _Optional[str] = ..., grpc_address: _Optional[str] = ..., jwks_json: _Optional[str] = ..., handle_keys_json: _Optional[str] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("key_statements", "anchor_jwks_json", "handle_certs", "handle_root_json")
    class KeyStatementsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class HandleCertsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_JWKS_JSON_FIELD_NUMBER: _ClassVar[int]
    HANDLE_CERTS_FIELD_NUMBER: _ClassVar[int]
    HANDLE_ROOT_JSON_FIELD_NUMBER: _ClassVar[int]
    key_statements: _containers.ScalarMap[str, str]
    anchor_jwks_json: str
    handle_certs: _containers.ScalarMap[str, str]
    handle_root_json: str
    def __init__(self, key_statements: _Optional[_Mapping[str, str]] = ..., anchor_jwks_json: _Optional[str] = ..., handle_certs: _Optional[_Mapping[str, str]] = ..., handle_root_json: _Optional[str] = ...) -> None: ...

class SyncEvent(_message.Message):
    __slots__ = ("seq", "kind", "payload_json", "created_at")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    payload_json: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., payload_json: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("node_prefix", "events")
    NODE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    node_prefix: str
    events: _containers.RepeatedCompositeFieldContainer[SyncEvent]
    def __init__(self, node_prefix: _Optional[str] = ..., events: _Optional[_Iterable[_Union[SyncEvent, _Mapping]]] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("acked_seq",)
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    acked_seq: int
    def __init__(self, acked_seq: _Optional[int] = ...) -> None: ...

class PrefixCounters(_message.Message):
    __slots__ = ("prefix", "day", "registrations", "resolutions", "errors")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    REGISTRATIONS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    day: str
    registrations: int
    resolutions: int
    errors: int
    def __init__(self, prefix: _Optional[str] = ..., day: _Optional[str] = ..., registrations: _Optional[int] = ..., resolutions: _Optional[int] = ..., errors: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_prefix", "counters", "outbox_backlog")
    NODE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_BACKLOG_FIELD_NUMBER: _ClassVar[int]
    node_prefix: str
    counters: _containers.RepeatedCompositeFieldContainer[PrefixCounters]
    outbox_backlog: int
    def __init__(self, node_prefix: _Optional[str] = ..., counters: _Optional[_Iterable[_Union[PrefixCounters, _Mapping]]] = ..., outbox_backlog: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("received_at",)
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LocateRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class LocateResponse(_message.Message):
    __slots__ = ("node_prefix", "http_base", "grpc_address", "key_statements", "ttl")
    class KeyStatementsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    HTTP_BASE_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    KEY_STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    node_prefix: str
    http_base: str
    grpc_address: str
    key_statements: _containers.ScalarMap[str, str]
    ttl: int
    def __init__(self, node_prefix: _Optional[str] = ..., http_base: _Optional[str] = ..., grpc_address: _Optional[str] = ..., key_statements: _Optional[_Mapping[str, str]] = ..., ttl: _Optional[int] = ...) -> None: ...
