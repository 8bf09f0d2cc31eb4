"""Coherence across the worker processes of one host: once a write has returned on one worker,
no worker serves the old value, not even from its hot cache while the NOTIFY is on its way."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from idnode import cache_host
from idnode.cache import HotCache
from idnode.cache_host import HostGenerations
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel
from tests.helpers import http_get, record_input
from tests.nodeproc import start_node


IDENT = "0.118.8/COHERENT-1"
PAIRS = 2000
#: Workers as `serve` runs them in a test: no per-client limits in the way of 2,000 writes.
ENV = {"IDNODE_HTTP_RATE_LIMIT": "0", "IDNODE_GRPC_WRITE_RATE": "0",
       "IDNODE_GRPC_ADDRESS_WRITE_RATE": "0"}


@pytest.mark.slow
async def test_no_stale_read_on_another_worker_right_after_an_update(dsn: str,
                                                                     keys: Keys) -> None:
    a = start_node(dsn, worker_id="a", env=ENV)
    b = start_node(dsn, worker_id="b", env=ENV)
    try:
        async with channel(a.grpc, keys.writer) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            await stub.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="coherence", records=[record_input(IDENT, product__name="0")]))
            assert (await http_get(b.http, f"/api/handles/{IDENT}")).status == 200  # cached on B
            stale: list[tuple[int, str]] = []
            started = time.monotonic()
            for i in range(1, PAIRS + 1):
                await stub.UpdateValues(pb.UpdateValuesRequest(identifier=IDENT, values=[
                    pb.Value(index=1, type="product.name", data=str(i))]))
                # The update has returned: B, which holds the previous value in its cache and
                # has maybe not heard the NOTIFY yet, must answer with this one.
                resp = await http_get(b.http, f"/api/handles/{IDENT}")
                assert resp.status == 200, resp.body
                seen = resp.json()["values"][0]["data"]["value"]
                if seen != str(i):
                    stale.append((i, seen))
            elapsed = time.monotonic() - started
        assert stale == [], f"{len(stale)} stale reads of {PAIRS} (first: {stale[:5]})"
        print(f"{PAIRS} update-then-read pairs across 2 workers in {elapsed:.1f} s, 0 stale")
    finally:
        a.stop()
        b.stop()



def _pair(identity: str) -> tuple[HotCache, HotCache]:
    """Two processes' caches on one host, as far as the shared counters go (no listener: no
    NOTIFY will ever arrive)."""
    caches = []
    for _ in range(2):
        c = HotCache(max_entries=100, ttl=60, negative_ttl=5)
        c.coherent = True
        c._share_host(identity)
        assert c.host is not None
        caches.append(c)
    return caches[0], caches[1]


def test_a_write_on_one_process_is_a_miss_on_the_other_at_once() -> None:
    a, b = _pair(f"test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        key, other = "0.118.8/X", "0.118.8/Y"
        b.fill(key, "old", b.ticket(key))
        b.fill(other, "kept", b.ticket(other))
        assert b.get(key) == "old"
        a.written([key])                  # committed on A; B has heard nothing
        assert b.get(key) is None         # ...and misses all the same
        assert b.get(other) == "kept" or cache_host.slot(other) == cache_host.slot(key)
        # A read that started before the write and stores what it read after it: the entry
        # carries the counter of its ticket, so it is a miss too.
        ticket = b.ticket(key)
        a.written([key])
        b.fill(key, "read before the write", ticket)
        assert b.get(key) is None
        b.fill(key, "new", b.ticket(key))
        assert b.get(key) == "new"
    finally:
        for c in (a, b):
            assert c.host is not None
            path = c.host.path
            c.host.close()
        path.unlink(missing_ok=True)


def test_the_shared_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "gens"
    path.write_bytes(b"")
    path.chmod(0o666)
    with pytest.raises(PermissionError):
        HostGenerations(path)
    path.chmod(0o600)
    gens = HostGenerations(path)
    gens.bump([3, 3, 5])
    assert (gens.view[3], gens.view[5], gens.view[4]) == (1, 1, 0)
    gens.close()


def test_the_last_process_to_close_the_file_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "gens"
    a, b = HostGenerations(path), HostGenerations(path)
    a.bump([1])
    assert b.view[1] == 1
    a.close()
    assert path.exists()  # b still has it
    b.close()
    assert not path.exists()
    c = HostGenerations(path)  # a new one starts from zero
    assert c.view[1] == 0
    c.close()
