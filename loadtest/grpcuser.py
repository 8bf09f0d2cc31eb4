"""A locust User over gRPC, after locust's own gRPC example: a client interceptor times every
unary call and fires `environment.events.request`, so gRPC calls land in locust's statistics
(and its CSV files) beside the HTTP requests. It also puts the credential on every call.

Import this before any channel is made: it switches grpc to gevent, which locust runs on.
"""
from __future__ import annotations

import time
from typing import Any

from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()

import grpc
from locust import User
from locust.env import Environment


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Reports each call as request_type "grpc", named by its method (RegisterBatch, …);
    adds `authorization: Bearer <key>` when a key is configured."""

    def __init__(self, environment: Environment, api_key: str = "") -> None:
        self.env = environment
        self.auth = (("authorization", f"Bearer {api_key}"),) if api_key else ()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if self.auth:
            details = details._replace(metadata=tuple(details.metadata or ()) + self.auth)
        started = time.perf_counter()
        outcome = continuation(details, request)
        exc = outcome.exception()  # waits for the call to finish
        length = 0 if exc is not None else outcome.result().ByteSize()
        self.env.events.request.fire(
            request_type="grpc", name=details.method.rsplit("/", 1)[-1],
            response_time=(time.perf_counter() - started) * 1000, response_length=length,
            response=None if exc is not None else outcome.result(), context={}, exception=exc)
        return outcome


class GrpcUser(User):
    """A User with `self.channel`, intercepted as above. Subclasses set `stub_class`."""

    abstract = True
    stub_class: Any = None
    #: Seconds a call may take before it counts as failed (DEADLINE_EXCEEDED).
    call_timeout = 30.0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        opts = environment.parsed_options
        target = getattr(opts, "grpc_host", None) or "127.0.0.1:50051"
        api_key = getattr(opts, "api_key", "") or ""
        raw = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20)])
        self._raw_channel = raw
        self.channel = grpc.intercept_channel(raw, LocustInterceptor(environment, api_key))
        self.stub = self.stub_class(self.channel) if self.stub_class is not None else None

    def on_stop(self) -> None:
        self._raw_channel.close()
