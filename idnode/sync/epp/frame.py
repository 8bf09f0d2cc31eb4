"""RFC 5734 §4 framing: each EPP data unit is preceded by its total length (the 4-byte header
included) as a 32-bit unsigned integer in network byte order."""
from __future__ import annotations

import asyncio
import struct

HEADER = struct.Struct("!I")
#: Larger units are refused before they are read: a 10,000-identifier command is far smaller.
MAX_FRAME = 4 * 1024 * 1024


class FrameError(ValueError):
    pass


async def read(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> bytes:
    """The next data unit; IncompleteReadError at a clean end of stream."""
    (total,) = HEADER.unpack(await reader.readexactly(4))
    if total < 5 or total > limit:
        raise FrameError(f"EPP data unit of {total} bytes (at most {limit})")
    return await reader.readexactly(total - 4)


def encode(payload: bytes) -> bytes:
    return HEADER.pack(len(payload) + 4) + payload
