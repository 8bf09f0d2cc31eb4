"""Handle administration values the node writes itself: HS_ADMIN and HS_PUBKEY of an admin
identity, in Handle's binary encodings (hdllib Encoder.encodeAdminRecord, Util.getBytesFromPublicKey)."""
from __future__ import annotations

import base64
import struct

from idnode.core.records import Value
from idnode.crypto.hdlkeys import PublicKey, handle_key_bytes

#: The index Handle gives an identity's own HS_ADMIN value.
ADMIN_INDEX = 100
#: Every admin permission (add/delete handle, add/delete derived prefix, read, modify,
#: remove and add values, modify/remove/add admin, list handles).
ALL_PERMISSIONS = 0x0FFF


def admin_data(handle: str, index: int, permissions: int = ALL_PERMISSIONS) -> bytes:
    """An HS_ADMIN value's data: permissions, admin handle, admin index."""
    raw = handle.encode("utf-8")
    return struct.pack(">Hi", permissions, len(raw)) + raw + struct.pack(">i", index)


def identity_values(handle: str, index: int, key: PublicKey) -> tuple[Value, Value]:
    """The HS_ADMIN (index 100, naming the identity itself) and HS_PUBKEY (at `index`)
    values that publish an admin identity the Handle way."""
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")
    return (Value(ADMIN_INDEX, "HS_ADMIN", b64(admin_data(handle, index)), "base64"),
            Value(index, "HS_PUBKEY", b64(handle_key_bytes(key)), "base64"))
