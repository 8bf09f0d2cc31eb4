"""The node's HS_SITE record: where its Handle interfaces are and the key it signs with."""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from idnode.api.handle.codec import (SP_HTTP, SP_TCP, SP_UDP, ST_ADMIN_AND_QUERY, ST_QUERY,
                                     Interface, Server, encode_site)


@dataclass(frozen=True, slots=True)
class Site:
    #: Changes whenever the record does; clients compare it with the serial in responses.
    serial: int
    #: The HS_SITE value's data.
    record: bytes


def build_site(advertise: str, port: int, http_port: int, public_key: bytes,
               node_prefix: str) -> Site:
    """One server with TCP first (admin and query), then UDP (query only), then HTTP.

    TCP comes first because the ID-SDK, having read the site over TCP, sends every later
    request to the first interface listed; UDP is query-only, as on Handle.Net sites, since
    its source addresses can be forged and a login or write must not ride on them.
    """
    address = ipaddress.ip_address(advertise)
    packed = address.packed.rjust(16, b"\x00")
    interfaces = (Interface(ST_ADMIN_AND_QUERY, SP_TCP, port), Interface(ST_QUERY, SP_UDP, port),
                  Interface(ST_QUERY, SP_HTTP, http_port))
    attributes = ((b"desc", f"idnode secondary node {node_prefix}".encode()),)
    body = encode_site(0, (Server(1, packed, public_key, interfaces),), attributes)
    # The serial is derived from what the record says, so every worker agrees on it and it
    # moves when the interfaces or the key do; 0 and 0xFFFF are not serials.
    serial = int.from_bytes(hashlib.sha256(body).digest()[:2], "big") % 0xFFFE + 1
    return Site(serial, encode_site(serial, (Server(1, packed, public_key, interfaces),),
                                    attributes))
