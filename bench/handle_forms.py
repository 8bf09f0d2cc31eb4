"""The signature forms' costs (issue 12): per-record signing and verifying for RS256 (Handle
form), SM2SM3 (IDIS form), Ed25519 and ML-DSA-65 (JOSE batch form), against serialising the
same record; batch registration with each signing set on, against raw COPY in the same run;
and what the lazily made Handle forms cost a record's first read.

    .venv/bin/python bench/handle_forms.py [--quick]
"""
from __future__ import annotations

import asyncio
import os
import statistics
import time

import orjson
from common import (PREFIX, bounded, cpu_meter, mode, postgres, prepare, run, save,
                    start_node, table, wrk)
from register_batch import batches_for, copy_rows, grpc_register

from idnode.core.handlecerts import issue_node_cert, node_ref, root_ref
from idnode.core.handleform import INDEXES, wire
from idnode.core.records import Value
from idnode.crypto import hsig, jws
from idnode.crypto.batch import sign_batch, verify_canonical
from idnode.crypto.keys import KeySet, SigningKey
from idnode.dsn import with_database  # noqa: F401 - keeps common's imports warm

#: Rounds per set, alternating (3 with --quick).
ROUNDS = 5
SETS = ("EdDSA", "EdDSA,RS256", "EdDSA,RS256,SM2SM3", "EdDSA,ML-DSA-65", "SM2SM3")


def node_with(dsn: str, algs: str, **env: str) -> tuple[object, int, int]:
    """start_node, tried again while the database still holds the connections of nodes
    just stopped (the embedded server's max_connections)."""
    for attempt in range(5):
        try:
            return start_node(dsn, env={"IDNODE_SIGNING_ALGORITHMS": algs, **env})
        except RuntimeError:
            if attempt == 4:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def record(i: int) -> tuple[str, list[Value]]:
    return f"0.118.8/RICE-{i:09d}", [
        Value(1, "product.name", f"五常大米 {i}"), Value(2, "batch.harvest_date", "2026-09-28"),
        Value(3, "URL", f"https://example.com/p/{i:09d}")]


def best_us(fn: object, items: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best / items * 1e6


def crypto(n: int) -> dict[str, float]:
    """µs per record: serialising (the baseline), signing and verifying in each form."""
    recs = [record(i) for i in range(n)]
    docs = [orjson.dumps({"identifier": ident, "values": [v.to_json() for v in vals]},
                         option=orjson.OPT_SORT_KEYS) for ident, vals in recs]
    out: dict[str, float] = {"baseline_serialise": best_us(
        lambda: [orjson.dumps({"identifier": i, "values": [v.to_json() for v in vs]},
                              option=orjson.OPT_SORT_KEYS) for i, vs in recs], n)}
    for alg in ("EdDSA", "ML-DSA-65", "SM2SM3"):
        key = SigningKey.generate(alg)
        ks = KeySet.of(key)
        batch = sign_batch(docs, key, "0.118")
        out[f"jose_{alg}_sign_batch{n}"] = best_us(lambda: sign_batch(docs, key, "0.118"), n)
        out[f"jose_{alg}_sign_alone"] = best_us(
            lambda: [sign_batch([d], key, "0.118") for d in docs[:50]], 50)

        def verify_all() -> None:
            jws._VERIFIED.clear()  # every record checked from scratch, no memo
            for i in range(50):
                jws._VERIFIED.clear()
                verify_canonical(docs[i], batch.bundle(i), ks)
        out[f"jose_{alg}_verify"] = best_us(verify_all, 50)
    for alg in ("RS256", "SM2SM3"):
        anchor, key = SigningKey.generate(alg), SigningKey.generate(alg)
        root = hsig.certify(root_ref(alg), anchor.jwk, [{"perm": "everything"}],
                            root_ref(alg), anchor, iat=0, nbf=0, exp=2**31 - 1)
        cert = issue_node_cert(anchor, "0.118", key.jwk)
        cert_v = wire(Value(INDEXES[alg][0], "HS_CERT", cert))
        signed = [[wire(v) for v in vals] + [cert_v] for _, vals in recs]

        def sign_all(count: int = 200) -> list[str]:
            return [hsig.sign_values(recs[i][0], signed[i], key, node_ref(alg, "0.118"),
                                     chain=[f"{INDEXES[alg][0]}:{recs[i][0]}", "400:0.0/0.0"],
                                     iat=1, nbf=0, exp=2**31 - 1) for i in range(count)]
        tokens = sign_all()
        out[f"hs_{alg}_sign"] = best_us(sign_all, 200)
        roots = [anchor.jwk]

        def lookup(handle: str, index: int) -> list[hsig.WireValue]:
            return [hsig.WireValue(400, "HS_CERT", root.encode())]

        def check_all(count: int = 100, cold: bool = True) -> None:
            for i in range(count):
                if cold:
                    hsig._VERIFIED.clear()  # the whole chain checked, as hdllib does
                values = signed[i] + [hsig.WireValue(INDEXES[alg][1], "HS_SIGNATURE",
                                                     tokens[i].encode())]
                (c,) = hsig.check_values(recs[i][0], values, roots, lookup, time.time())
                assert c.failure is None, c.failure
        out[f"hs_{alg}_verify_whole_chain"] = best_us(check_all, 100)
        best = float("inf")
        for _ in range(3):
            hsig._VERIFIED.clear()
            check_all(1)  # the node's and the root's certificates, once; then only records
            t = time.perf_counter()
            for i in range(1, 101):
                values = signed[i] + [hsig.WireValue(INDEXES[alg][1], "HS_SIGNATURE",
                                                     tokens[i].encode())]
                hsig.check_values(recs[i][0], values, roots, lookup, time.time())
            best = min(best, time.perf_counter() - t)
        out[f"hs_{alg}_verify_certs_known"] = best / 100 * 1e6
    return out


async def register(port: int, key: str, idents: list[str]) -> None:
    import grpc

    from idnode.v1 import registry_pb2 as pb
    from idnode.v1 import registry_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        stub = pb_grpc.RegistryStub(ch)
        for n in range(0, len(idents), 1000):
            await stub.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key=f"lazy-{idents[0]}-{n}", records=[pb.RecordInput(identifier=i, values=[
                    pb.Value(index=1, type="product.name", data="五常大米"),
                    pb.Value(index=2, type="URL", data=f"https://example.com/{i}")])
                    for i in idents[n:n + 1000]]), metadata=(("authorization", f"Bearer {key}"),))


async def lazy_first_read(http_port: int, idents: list[str]) -> tuple[float, float]:
    """(µs per record of a first /api/handles read, which signs; of a second, which
    does not), 16 requests at a time, one keep-alive connection each."""
    async def one_pass() -> float:
        queue = list(idents)

        async def client() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
            try:
                while queue:
                    ident = queue.pop()
                    writer.write(f"GET /api/handles/{ident} HTTP/1.1\r\nHost: x\r\n\r\n"
                                 .encode())
                    head = await reader.readuntil(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200"), head
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(length)
                    assert b"HS_SIGNATURE" in body
            finally:
                writer.close()
        t = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(16)))
        return (time.perf_counter() - t) / len(idents) * 1e6
    return await one_pass(), await one_pass()


def main() -> None:
    global ROUNDS
    quick = mode() == "quick"
    seconds = 3.0 if quick else 6.0
    ROUNDS = 3 if quick else ROUNDS
    bounded(900)
    cpu = crypto(1000)
    base = cpu["baseline_serialise"]
    table("per record, µs (and x serialising the record)", [
        (name, f"{us:9.1f}  ({us / base:6.1f}x)") for name, us in cpu.items()])
    results: dict[str, object] = {"crypto_us_per_record": {k: round(v, 2)
                                                           for k, v in cpu.items()}}
    with postgres(durable=True) as dsn:
        key = str(run(prepare(dsn)))
        os.sched_setaffinity(0, {1})
        run(copy_rows(dsn, 1))
        # One node per set, all up at once; rounds alternate between the sets (and COPY), and
        # medians are compared: the machine is shared, a set's run alone says little.
        nodes = {algs: node_with(dsn, algs) for algs in SETS}
        raws: list[float] = []
        runs: dict[str, list[float]] = {algs: [] for algs in SETS}
        cpu_rows: dict[str, list[float]] = {algs: [] for algs in SETS}
        try:
            for _, _, grpc_port in nodes.values():
                run(grpc_register(grpc_port, key, 1))
            for _ in range(ROUNDS):
                raws.append(float(run(copy_rows(dsn, seconds))))  # type: ignore[arg-type]
                for algs, (node, _, grpc_port) in nodes.items():
                    batches = batches_for(seconds)  # before the meter: the node idles meanwhile
                    with cpu_meter(node.pid) as cpu_use:  # type: ignore[attr-defined]
                        rate = float(run(grpc_register(grpc_port, key, seconds,
                                                       batches=batches)))  # type: ignore[arg-type]
                    runs[algs].append(rate)
                    # node CPU per row: steadier than a rate on a machine others share
                    cpu_rows[algs].append(cpu_use["cpu_s"] / (rate * cpu_use["wall_s"]) * 1e6)
        finally:
            for node, _, _ in nodes.values():
                node.stop()
        raw = statistics.median(raws)
        rates = {algs: statistics.median(r) for algs, r in runs.items()}
        per_row = {algs: statistics.median(r) for algs, r in cpu_rows.items()}
        rows = [(f"raw COPY rows/s (median of {ROUNDS} rounds)", f"{raw:,.0f}")]
        for algs, rate in rates.items():
            rows.append((f"RegisterBatch rows/s, signing_algorithms={algs}",
                         f"{rate:,.0f}  ({rate / raw:.3f}x COPY, "
                         f"{rate / rates['EdDSA']:.3f}x EdDSA alone); node CPU "
                         f"{per_row[algs]:.1f} µs/row ({per_row[algs] / per_row['EdDSA']:.3f}x)"))
        # the deferred cost: a record's first read in a Handle form signs it (both forms)
        node, http_port, grpc_port = node_with(dsn, "EdDSA,RS256,SM2SM3",
                                               IDNODE_CACHE_MAX_ENTRIES="1000000")
        try:
            idents = [f"{PREFIX}/LAZY-{i:06d}" for i in range(2000)]
            run(register(grpc_port, key, idents))
            cold, warm = run(lazy_first_read(http_port, idents))  # type: ignore[misc]
        finally:
            node.stop()
        rows.append(("first /api/handles read of a record, µs (signs RS256 + SM2, keeps)",
                     f"{cold:,.0f}"))
        rows.append(("second read, µs (cache hit)", f"{warm:,.0f}"))
        table("registration with each signing set, and the lazily made forms", rows)
        results.update({"raw_copy_rows_per_s": round(raw), "seconds": seconds, "rounds": ROUNDS,
                        "runs_rows_per_s": {k: [round(x) for x in v] for k, v in runs.items()},
                        "register_rows_per_s": {k: round(v) for k, v in rates.items()},
                        "ratio_to_copy": {k: round(v / raw, 3) for k, v in rates.items()},
                        "ratio_to_eddsa": {k: round(v / rates["EdDSA"], 3)
                                           for k, v in rates.items()},
                        "node_cpu_us_per_row": {k: round(v, 2) for k, v in per_row.items()},
                        "cpu_ratio_to_eddsa": {k: round(v / per_row["EdDSA"], 3)
                                               for k, v in per_row.items()},
                        "first_read_us": round(cold), "cached_read_us": round(warm)})
        # the hot path: a record whose forms are made, served from the cache entry, against a
        # node serving no Handle form (the same record, same run, alternating wrk rounds)
        hot: dict[str, dict[str, list[float]]] = {}
        pair = {algs: node_with(dsn, algs) for algs in ("EdDSA", "EdDSA,RS256,SM2SM3")}
        try:
            for algs, (_, http_port, grpc_port) in pair.items():
                ident = f"{PREFIX}/HOT-{algs.replace(',', '-')}"
                run(register(grpc_port, key, [ident]))
                hot[algs] = {"api": [], "json": [], "api_cpu": [], "json_cpu": []}
                for path in (f"/api/handles/{ident}", f"/{ident}"):
                    wrk(f"http://127.0.0.1:{http_port}{path}", seconds=1)  # warm, and signed
            for _ in range(ROUNDS * 2):
                for algs, (node, http_port, _) in pair.items():
                    ident = f"{PREFIX}/HOT-{algs.replace(',', '-')}"
                    for name, path in (("api", f"/api/handles/{ident}"), ("json", f"/{ident}")):
                        with cpu_meter(node.pid) as use:  # type: ignore[attr-defined]
                            rps = wrk(f"http://127.0.0.1:{http_port}{path}", seconds=2)["rps"]
                        hot[algs][name].append(rps)
                        hot[algs][f"{name}_cpu"].append(use["cpu_s"] / (rps * use["wall_s"])
                                                        * 1e6)
        finally:
            for node, _, _ in pair.values():
                node.stop()
        med = {a: {k: statistics.median(v) for k, v in d.items()} for a, d in hot.items()}
        off, on = med["EdDSA"], med["EdDSA,RS256,SM2SM3"]
        table("hot resolve (cache hit, wrk -c64), forms made vs no forms (medians)", [
            (f"{path} {what}", f"{off[k]:,.1f} -> {on[k]:,.1f}  ({on[k] / off[k]:.3f}x)")
            for k, path, what in (
                ("api", "/api/handles", "req/s"), ("api_cpu", "/api/handles", "node CPU µs/req"),
                ("json", "/{identifier}", "req/s"),
                ("json_cpu", "/{identifier}", "node CPU µs/req"))])
        results["hot"] = {a: {k: round(v, 1) for k, v in d.items()} for a, d in med.items()}
    save("handle_forms", results, section=mode())


if __name__ == "__main__":
    main()
