"""What every servicer method shares: authenticate, call core, map errors once, record metrics."""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from idnode.api.grpc.auth import actor_of
from idnode.api.grpc.status import to_status
from idnode.core.audit import Actor
from idnode.core.auth import Authenticator
from idnode.core.errors import IdnodeError
from idnode.metrics import NodeMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")
C = TypeVar("C")


class Servicer:
    def __init__(self, authenticator: Authenticator, metrics: NodeMetrics) -> None:
        self.authenticator = authenticator
        self.metrics = metrics

    async def call(self, method: str, context: grpc.aio.ServicerContext,
                   fn: Callable[[Actor], Awaitable[T]]) -> T:
        return await guarded(self.metrics, method, context,
                             lambda: actor_of(context, self.authenticator), fn)


async def guarded(metrics: NodeMetrics, method: str, context: grpc.aio.ServicerContext,
                  identify: Callable[[], Awaitable[C]], fn: Callable[[C], Awaitable[T]]) -> T:
    """Runs fn with the identified caller; maps domain errors to statuses, records metrics."""
    started = time.perf_counter()
    code = "OK"
    try:
        return await fn(await identify())
    except IdnodeError as exc:
        status = to_status(exc)
        code = status.code.name
        await context.abort_with_status(status)
        raise  # unreachable: abort raises
    except grpc.aio.AbortError:
        raise
    except Exception:
        code = "INTERNAL"
        log.exception("grpc method=%s failed", method)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise
    finally:
        metrics.grpc_requests.inc((method, code))
        metrics.grpc_latency.observe(time.perf_counter() - started, (method,))
