"""Whatever a client puts in a path or a query, the HTTP front door answers with a precise
status: never a 5xx (an exception the edge did not map), and a refusal is RFC 9457 problem
JSON when the client asks for JSON (IIIDAP's own error form under /iiidap/)."""
from __future__ import annotations

import itertools
import random

import orjson

from idnode.node import Node
from tests.helpers import http_get

PATHS = ["/api/handles/{a}", "/api/handles/{a}/{b}", "/{a}/{b}", "/{a}", "/iiidap/{a}",
         "/iiidap/identifier/{a}/{b}", "/api/trace/{a}/{b}", "/api/log/inclusion",
         "/api/log/consistency", "/api/log/head", "/api/attachments/{a}", "/01/{a}",
         "/01/{a}/10/{b}", "/gtin/{a}", "/.well-known/{a}", "/0.118.8/{a}"]
SEGMENTS = ["0.118.8", "FUZZ-1", "", "%00", "%ff%fe", "%2F%2E%2E", "..", "长" * 300, "x" * 3000,
            "9" * 40, "-1", "0", "%25", "%E9%95%BF", "09501101020917", "0950110102091",
            "a%0d%0aSet-Cookie:x", "%u202e", "{}", "\\"]
PARAMS = ["index", "type", "leaf", "size", "from", "to", "linkType", "context", "lang",
          "callback", "pretty", "auth", "format", "tree_head", "attrs", "reason"]
VALUES = ["", "1", "-1", "0", "99999999999999999999999", "2147483648", "1e5", "abc", "%00",
          "%ff", "长", "x" * 2000, "a,b,,c", "1,2,3", "true", "null", "gs1:pip", "*"]


async def test_no_path_or_query_gets_a_server_error(node: Node) -> None:
    rng = random.Random("http-fuzz")
    failures = []
    for template, _ in itertools.product(PATHS, range(6)):
        path = template.format(a=rng.choice(SEGMENTS), b=rng.choice(SEGMENTS))
        query = "&".join(f"{rng.choice(PARAMS)}={rng.choice(VALUES)}"
                         for _ in range(rng.choice([0, 1, 3])))
        target = path + ("?" + query if query else "")
        for accept in ("application/json", "text/html"):
            resp = await http_get(node.ports.http, target, {"Accept": accept})
            if resp.status >= 500:
                failures.append(f"{resp.status} for {target[:200]} ({accept}): {resp.body[:200]!r}")
            elif resp.status >= 400 and accept == "application/json" and resp.status != 431:
                kind = resp.headers.get("content-type", "")
                if path.startswith("/iiidap/") and not kind.startswith("application/problem"):
                    # IIIDAP answers errors in its own (RDAP-shaped) form; a request the
                    # server cannot parse at all (raw UTF-8 in the target) is the server's.
                    if "errorCode" not in orjson.loads(resp.body):
                        failures.append(f"{resp.status} IIIDAP error without errorCode: "
                                        f"{target[:200]}")
                elif not kind.startswith("application/problem+json"):
                    failures.append(f"{resp.status} {kind} for {target[:200]}")
                elif not {"status", "title"} <= set(orjson.loads(resp.body)):
                    failures.append(f"{resp.status} problem without status/title: {target[:200]}")
    assert not failures, "\n".join(failures[:10])
