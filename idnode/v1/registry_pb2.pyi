import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Value(_message.Message):
    __slots__ = ("index", "type", "format", "data", "ttl", "timestamp", "private")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    index: int
    type: str
    format: str
    data: str
    ttl: int
    timestamp: _timestamp_pb2.Timestamp
    private: bool
    def __init__(self, index: _Optional[int] = ..., type: _Optional[str] = ..., format: _Optional[str] = ..., data: _Optional[str] = ..., ttl: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., private: _Optional[bool] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("identifier", "values", "version", "created_at", "updated_at", "node", "signature_json", "private_digest", "signature_values")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_VALUES_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    values: _containers.RepeatedCompositeFieldContainer[Value]
    version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    node: str
    signature_json: str
    private_digest: str
    signature_values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, identifier: _Optional[str] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node: _Optional[str] = ..., signature_json: _Optional[str] = ..., private_digest: _Optional[str] = ..., signature_values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class RecordInput(_message.Message):
    __slots__ = ("identifier", "values")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, identifier: _Optional[str] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class RegisterBatchRequest(_message.Message):
    __slots__ = ("idempotency_key", "records")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    records: _containers.RepeatedCompositeFieldContainer[RecordInput]
    def __init__(self, idempotency_key: _Optional[str] = ..., records: _Optional[_Iterable[_Union[RecordInput, _Mapping]]] = ...) -> None: ...

class RegisterBatchResponse(_message.Message):
    __slots__ = ("registered", "replayed", "committed_at")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    registered: int
    replayed: bool
    committed_at: _timestamp_pb2.Timestamp
    def __init__(self, registered: _Optional[int] = ..., replayed: _Optional[bool] = ..., committed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpdateValuesRequest(_message.Message):
    __slots__ = ("identifier", "values", "expected_version")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    values: _containers.RepeatedCompositeFieldContainer[Value]
    expected_version: int
    def __init__(self, identifier: _Optional[str] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("identifier", "expected_version")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    expected_version: int
    def __init__(self, identifier: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("identifier", "types", "indexes")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    types: _containers.RepeatedScalarFieldContainer[str]
    indexes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, identifier: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., indexes: _Optional[_Iterable[int]] = ...) -> None: ...

class ResolveBatchRequest(_message.Message):
    __slots__ = ("identifiers",)
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    identifiers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, identifiers: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolveResult(_message.Message):
    __slots__ = ("identifier", "record", "found")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    record: Record
    found: bool
    def __init__(self, identifier: _Optional[str] = ..., record: _Optional[_Union[Record, _Mapping]] = ..., found: _Optional[bool] = ...) -> None: ...

class ResolveBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ResolveResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ResolveResult, _Mapping]]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("prefix", "page_size", "page_token")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    page_size: int
    page_token: str
    def __init__(self, prefix: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("identifiers", "next_page_token")
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    identifiers: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, identifiers: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
