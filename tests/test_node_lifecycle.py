"""The composition root's lifecycle: a start that fails part-way stops what it had started
(ports, tasks and pools released), and stop() stops every part even when one of them fails."""
from __future__ import annotations

import asyncio
import socket

import pytest

from idnode.node import Node
from tests.conftest import make_settings


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_a_failed_start_stops_what_had_started(dsn: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    try:
        # The Handle port is taken: the last listener to start fails.
        node = Node(make_settings(handle_port=busy), dsn)
        with pytest.raises(OSError):
            await node.start()
    finally:
        taken.close()
    assert node.ports.http and node.ports.grpc and node.ports.metrics
    for port in (node.ports.http, node.ports.grpc, node.ports.metrics):
        assert _bindable(port), port
    assert node.core.db.pool.is_closing()
    assert all(task.done() for task in node._rounds)
    assert not node.cache.listening
    assert not [t for t in asyncio.all_tasks() if t.get_name() in ("scan-flusher",
                                                                    "tree-head-signer")
                and not t.done()]


async def test_stop_stops_every_part_when_one_fails(dsn: str) -> None:
    node = Node(make_settings(), dsn)
    ports = await node.start()

    async def broken() -> None:
        raise RuntimeError("the cache would not stop")

    real_stop = node.cache.stop
    node.cache.stop = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match="the cache would not stop"):
            await node.stop(grace=1)
        # what comes after the cache in the order of stopping stopped all the same
        assert node.core.db.pool.is_closing()
        for port in (ports.http, ports.grpc, ports.metrics):
            assert _bindable(port), port
    finally:
        await real_stop()
