"""Whatever a client frames on the Handle/IDIS protocol, the node answers with the protocol's
codes: never its "internal error" (an exception the service did not map), and it goes on
serving. The bodies are generated: random bytes, and valid requests with bytes flipped,
cut short or length fields made huge, for every operation the node knows and some it does
not."""
from __future__ import annotations

import random
import struct

from idnode.node import Node
from tests import hdlwire as w

OPCODES = (1, 2, 100, 101, 102, 103, 104, 200, 2001, 7, 9999)
ROUNDS = 30


def _bodies(rng: random.Random) -> list[bytes]:
    valid = [w.resolution_body("0.118.8/FUZZ-1", (1, 2), ("URL",)),
             w.values_body("0.118.8/FUZZ-1", w.value(1, "URL", "https://example.com")),
             w.s("0.118.8/FUZZ-1") + struct.pack(">i", 2) + struct.pack(">ii", 1, 2)]
    out = []
    for _ in range(ROUNDS):
        base = bytearray(rng.choice(valid))
        kind = rng.randrange(5)
        if kind == 0:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(80))))
        elif kind == 1 and base:
            base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
            out.append(bytes(base))
        elif kind == 2:
            out.append(bytes(base[:rng.randrange(len(base) + 1)]))
        elif kind == 3 and len(base) >= 4:
            at = rng.randrange(0, len(base) - 3)
            base[at:at + 4] = struct.pack(">i", rng.choice([-1, 2**31 - 1, 10**9, -2**31]))
            out.append(bytes(base))
        else:
            out.append(bytes(base) + bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
    return out


async def test_no_message_gets_an_internal_error(node: Node) -> None:
    rng = random.Random("handle-fuzz")
    failures = []
    conn = await w.Tcp.open(node.ports.handle)
    try:
        request_id = 0
        for opcode in OPCODES:
            for body in _bodies(rng):
                request_id += 1
                try:
                    r = await conn.call(w.request(opcode, body, request_id=request_id))
                except (ConnectionError, EOFError, OSError):
                    conn.close()  # the node may close on what it cannot frame; go on anew
                    conn = await w.Tcp.open(node.ports.handle)
                    continue
                if b"internal error" in r.body:
                    failures.append(f"opcode {opcode} rc {r.rc} for body {body.hex()[:160]}")
                elif r.request_id != request_id:
                    failures.append(f"opcode {opcode}: answer to {r.request_id}, not "
                                    f"{request_id}")
        # Still serving, on the connection that took all of it.
        ok = await conn.call(w.request(2, b"", request_id=request_id + 1))
        assert ok.rc == 1, ok
    finally:
        conn.close()
    assert not failures, "\n".join(failures[:8])
