"""One typed settings object, read once at start from a TOML file and IDNODE_* variables."""
from __future__ import annotations

import difflib
import math
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping


#: The demo's and the tests' node prefix (see Settings.node_prefix).
DEMO_NODE_PREFIX = "0.118"

@dataclass(frozen=True, slots=True)
class Settings:
    #: PostgreSQL DSN; empty means start the embedded server in `data_dir`.
    database_url: str = ""
    #: Where the node keeps its files: the embedded PostgreSQL, keyrings, Handle keys, escrow.
    data_dir: Path = Path(".idnode")
    #: The embedded PostgreSQL's port (loopback only; used when database_url is empty).
    embedded_pg_port: int = 54329
    #: Read replicas (comma-separated DSNs): resolution reads go there when they are fresh.
    database_read_urls: str = ""
    #: Seconds a replica may lag; keys written more recently are read from the primary.
    replica_max_lag: float = 5.0
    #: The node's own prefix, as the national top-level node allocated it; enterprise
    #: prefixes are allocated under it. The default is the demo's and the tests': under 0,
    #: the Global Handle Registry's own namespace, where no node or enterprise is ever
    #: allocated a prefix, so it can collide with no real one. `idnode serve` refuses to
    #: start on it unless it is explicitly configured or --demo is given.
    node_prefix: str = DEMO_NODE_PREFIX
    #: The public HTTP listener (resolution, REST, scan pages); 0 picks a free port.
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    #: The gRPC listener (registration, administration, trace); 0 picks a free port.
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    #: Processes `idnode serve` starts, sharing the ports (SO_REUSEPORT); one per core.
    workers: int = 1
    #: Of the `workers`, how many serve gRPC only (the MES front door: registration, trace appends),
    #: the others HTTP and the Handle protocol only, so consumers' resolves never wait behind
    #: a batch being checked and signed in the same process; 0: every worker serves all.
    grpc_workers: int = 0
    #: Database connections per process: kept open, and at most.
    db_pool_min: int = 2
    db_pool_max: int = 10
    #: Seconds a statement may run before the database cancels it (writes give up on the
    #: client side a second later, should the server not answer at all).
    db_statement_timeout: float = 10.0
    #: Database faults, bounded: seconds to open a connection, for a request to get one from
    #: the pool, and for a read on the request path (resolution, credential and prefix
    #: lookups, trace pages) to answer. Past any of them the request gets 503 / UNAVAILABLE
    #: (or a hot record from the cache, marked stale) and the database counts as
    #: unreachable: requests then fail at once while a probe retries every
    #: db_retry_interval seconds. Keep acquire + query under clients' patience (hdllib
    #: gives a UDP answer 3 s before it falls back to TCP).
    db_connect_timeout: float = 3.0
    db_acquire_timeout: float = 1.0
    db_query_timeout: float = 2.0
    db_retry_interval: float = 1.0
    #: Records the hot cache holds per process (LRU).
    cache_max_entries: int = 200_000
    #: Seconds a positive entry stays at most (each record's own TTL may cut it shorter).
    cache_ttl: float = 300.0
    #: Seconds a "not found" answer is cached.
    cache_negative_ttl: float = 5.0
    #: The hot record cache (off: every resolution reads the database).
    cache_enabled: bool = True
    #: Records a process loads into its hot cache once it serves: the most scanned ones of the
    #: last cache_warm_window seconds (consumers' scans, trace_scans), so a restarted or new
    #: process does not send its whole hot set to the database at once; 0: none.
    cache_warm_top: int = 10_000
    #: Seconds of scans that rank the records cache_warm_top loads.
    cache_warm_window: float = 86_400.0
    #: The shared second cache tier: a Redis URL (redis://[:password@]host:port/db, or
    #: rediss:// for TLS) that every replica of the deployment uses; empty: no second tier.
    #: Needs the `redis` extra (pip install 'idnode[redis]').
    cache_redis_url: str = ""
    #: Key prefix in Redis; default "idnode:<node_prefix>". Deployments sharing one Redis
    #: must each have their own.
    cache_redis_namespace: str = ""
    #: Seconds an entry stays in Redis at most (each record's own TTL may cut it shorter).
    cache_redis_ttl: float = 300.0
    #: Seconds one Redis operation may take; past it the tier is skipped for cache_redis_retry.
    cache_redis_timeout: float = 0.2
    #: Seconds the tier is skipped after a failure before Redis is tried again.
    cache_redis_retry: float = 5.0
    #: Records per registration batch and identifiers per batch resolution, at most.
    max_batch_register: int = 10_000
    max_batch_resolve: int = 1_000
    #: Bytes of one value's data, and of one record's values together, at most.
    max_value_bytes: int = 65_536
    max_record_bytes: int = 262_144
    #: gRPC message size limit (a 10,000-record batch must fit).
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    #: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    log_level: str = "INFO"
    #: The top-level node's gRPC address and this node's token there; empty: no federation.
    upstream_grpc: str = ""
    upstream_token: str = ""
    #: How other nodes reach this one (advertised upward); default: the HTTP/gRPC listen address.
    advertise_http: str = ""
    advertise_grpc: str = ""
    #: Record signing. Keys live in keyring_dir (default data_dir/keys), their private parts
    #: encrypted with key_passphrase (or the contents of key_passphrase_file).
    signing_enabled: bool = True
    keyring_dir: str = ""
    key_passphrase: str = ""
    key_passphrase_file: str = ""
    #: Also sign with ML-DSA-65 (post-quantum) beside the classical signature.
    sign_post_quantum: bool = False
    #: The signatures records carry (comma list, docs/SIGNING.md). The JOSE batch form signs
    #: with the first of EdDSA, ES256 or SM2SM3 listed (EdDSA if none is), ML-DSA-65 adds a
    #: post-quantum batch signature (as sign_post_quantum); RS256 adds the Handle form
    #: (HS_SIGNATURE / HS_CERT values that Handle.Net's own verifier accepts), SM2SM3 the IDIS
    #: form (SM2 with SM3 digests, 商用密码). The Handle and IDIS forms are signed per record
    #: on its first read in a Handle form, and kept.
    signing_algorithms: str = "EdDSA,RS256"
    #: Days a Handle or IDIS form signature is valid; one read in its last week renews it.
    handle_signature_days: float = 30.0
    #: Outbox events shipped upward per batch, and seconds between heartbeats to the top.
    sync_batch: int = 500
    heartbeat_interval: float = 30.0
    #: TLS to the top-level node (PEM paths). With upstream_tls_ca the upstream channel is TLS
    #: only: the top's certificate must chain to this CA, and a plaintext top is never spoken
    #: to. With upstream_tls_cert and upstream_tls_key this node also presents a client
    #: certificate (mutual TLS, for a top that requires one).
    upstream_tls_ca: str = ""
    upstream_tls_cert: str = ""
    upstream_tls_key: str = ""
    #: EPP to the top-level node's Business Management System (draft-chen-top-level-
    #: interface-protocol; docs/FEDERATION.md): "host:port" (700 is EPP's port); empty: off.
    #: Enterprise and identifier provisioning then goes over EPP (TLS with upstream_tls_ca,
    #: this node's certificate upstream_tls_cert/key, as RFC 5734 wants), and the gRPC
    #: upstream (if any) carries only what the drafts do not cover (signed tree heads,
    #: heartbeats, cross-node resolution). The EPP client id (default: node_prefix) and
    #: password (6-16 characters, from `idnode top node-add` or the top's operator).
    upstream_epp: str = ""
    upstream_epp_client_id: str = ""
    upstream_epp_password: str = ""
    #: Seconds one EPP exchange (connect, login, a command) may take.
    upstream_epp_timeout: float = 10.0
    #: The reference top-level node's EPP listener (`idnode top serve`): its address and
    #: port (0 picks a free one, -1 switches it off); TLS with grpc_tls_cert/key, and with
    #: grpc_tls_client_ca every client must present a certificate from that CA.
    top_epp_host: str = "127.0.0.1"
    top_epp_port: int = 700
    #: Data escrow (`idnode escrow`, docs/FEDERATION.md): where deposits are written
    #: (default data_dir/escrow), the node's OpenPGP signing key (made on first use, default
    #: data_dir/escrow/signing-key.asc, its certificate beside it for the escrow agent), and
    #: the escrow agent's OpenPGP certificate deposits are encrypted to (required to deposit).
    escrow_dir: str = ""
    escrow_signing_key: str = ""
    escrow_agent_cert: str = ""
    #: Seconds between scheduled full and incremental deposits made by the serving node
    #: (0: none; `idnode escrow deposit` always works).
    escrow_full_interval: float = 0.0
    escrow_incremental_interval: float = 0.0
    #: Where escrow reports go after each deposit (draft-wu-identifier-data-escrow-
    #: interface): the top-level node's reporting interface, e.g.
    #: https://top.example.invalid:7443/report/escrow (the node prefix is appended), with
    #: basic authentication as upstream_epp_client_id / upstream_epp_password and TLS as
    #: upstream_tls_*. Empty: no report is sent.
    escrow_report_url: str = ""
    #: The reference top-level node's reporting listener for escrow reports (`idnode top
    #: serve`; TLS as its EPP listener): 0 picks a free port, -1 (the default) is off.
    top_escrow_port: int = -1
    #: The trust anchor, pinned: a JWKS file with the top-level node's public keys (`idnode
    #: top anchor` prints it). Records from other nodes are checked against it alone, and a
    #: top presenting another anchor is refused. Never learned from the wire: without it no
    #: other node's record is served.
    anchor_jwks: str = ""
    #: Resolution across nodes: seconds a whole fetch from another node may take, the largest
    #: answer read from it (bytes), and a CA bundle for peers served over https (default:
    #: the system's CAs).
    remote_timeout: float = 2.0
    remote_max_response_bytes: int = 4 * 1024 * 1024
    remote_tls_ca: str = ""
    #: Prefix locations remembered from the top-level node (LRU; callers choose the prefixes).
    remote_locations_max: int = 10_000
    #: Prefixes counted for the heartbeat between two heartbeats (LRU; a standalone node never
    #: sends its counts, so this is all it ever holds).
    stats_max_prefixes: int = 10_000
    #: Seconds an outbox event is kept after the top-level node acknowledged it (0: dropped
    #: at the next round), and seconds between pruning rounds.
    outbox_retention: float = 7 * 86400.0
    outbox_prune_interval: float = 600.0
    #: Anonymous HTTP requests a client address may make per second (0: no limit), and the
    #: burst it may save up; past it, 429 with Retry-After.
    http_rate_limit: float = 200.0
    http_rate_burst: float = 400.0
    #: Take the client address from X-Forwarded-For (only behind a trusted load balancer).
    http_trust_forwarded: bool = False
    #: HTTP connection limits (per process; docs/OPERATIONS.md "Limits"). Seconds a request's
    #: headers may take from its first byte (or a new connection from its opening), a body
    #: from the end of its headers, a kept-alive connection may sit idle, and a client may
    #: leave its answers unread; past them the connection is closed (408 mid-request).
    http_header_timeout: float = 10.0
    http_body_timeout: float = 30.0
    http_idle_timeout: float = 15.0
    http_send_timeout: float = 30.0
    #: Pipelined requests queued per connection before it is no longer read from, and bytes
    #: parsed per connection per event-loop turn (the rest waits for a later turn).
    http_max_pipeline: int = 16
    http_read_chunk: int = 16_384
    #: Open HTTP connections per process; past it a new one is answered 503 and closed.
    http_max_connections: int = 2048
    #: The listen backlog (the kernel caps it at net.core.somaxconn).
    http_backlog: int = 2048
    #: New HTTP connections a second per client address, and the burst; past it they are
    #: closed at once. 0: no limit. Set 0 behind a load balancer (every connection then
    #: comes from its address; rate-limit connections there).
    http_connection_rate: float = 50.0
    http_connection_burst: float = 200.0
    #: The operator-only listener for /metrics (Prometheus) and /healthz; /metrics is not
    #: served on the public HTTP port. 0 picks a free port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    #: Seconds between signed tree heads of the traceability log (when it has grown); each
    #: is reported to the top-level node. 0: only when a proof is asked for.
    tree_head_interval: float = 60.0
    #: The scan page warns of copied codes once a code was scanned more than this many times,
    #: or from more than this many places (client networks).
    scan_warn_count: int = 20
    scan_warn_places: int = 5
    #: Seconds a checked trace is reused for the scan page. Appends through the node take
    #: effect at once; this bounds how long a change behind its back (tampering) goes unseen.
    trace_view_max_age: float = 5.0
    #: TLS for gRPC (PEM paths); with a client CA, client certificates are verified and may
    #: authenticate as the credential they are bound to (mutual TLS).
    grpc_tls_cert: str = ""
    grpc_tls_key: str = ""
    grpc_tls_client_ca: str = ""
    grpc_tls_require_client_cert: bool = False
    #: `idnode register` / `idnode resolve`: the CA that signed the node's gRPC certificate
    #: (set: the call is TLS only), and a client certificate and key for mutual TLS.
    client_tls_ca: str = ""
    client_tls_cert: str = ""
    client_tls_key: str = ""
    #: gRPC limits, checked before a message is parsed: writes a second per credential and
    #: per client address, with bursts (0: no limit; past it RESOURCE_EXHAUSTED and a
    #: retry-after); the largest message a caller without a credential may send; calls
    #: served at once (past it RESOURCE_EXHAUSTED).
    grpc_write_rate: float = 200.0
    grpc_write_burst: float = 400.0
    grpc_address_write_rate: float = 400.0
    grpc_address_write_burst: float = 800.0
    grpc_anonymous_max_message_bytes: int = 1 << 20
    grpc_max_concurrent_rpcs: int = 1024
    #: The Handle/IDIS native protocol (RFC 3652 family, as CAICT's ID-SDK and Handle.Net's
    #: tools speak it), on TCP and UDP. 2641 is the Handle port; 0 picks a free one.
    handle_enabled: bool = True
    handle_host: str = "127.0.0.1"
    handle_port: int = 2641
    #: The address HS_SITE gives clients for the TCP, UDP and HTTP interfaces (an IP
    #: literal: the ID-SDK takes no names); default handle_host.
    handle_advertise: str = ""
    #: Seconds a TCP connection may sit idle, or take to send one request, before it is closed.
    handle_idle_timeout: float = 30.0
    #: Per process: open TCP connections, and requests being served at once (past it a
    #: request is answered "server too busy" at once).
    handle_max_connections: int = 1024
    handle_max_inflight: int = 512
    #: UDP response rate limit per client network (/24 IPv4, /56 IPv6), like DNS RRL: answers
    #: a second and burst; past it answers are dropped, and every handle_rrl_slip-th one is
    #: cut to a minimal "too busy" error no larger than the request (0: drop them all).
    #: handle_rrl_rate 0 switches the limit off.
    handle_rrl_rate: float = 2000.0
    handle_rrl_burst: float = 4000.0
    handle_rrl_slip: int = 2
    #: Seconds a Handle authentication challenge waits for its answer.
    handle_challenge_ttl: float = 60.0
    #: The ID-SDK's legacy password login (opcode 2000: user = API key id, password = the API
    #: key, sent in clear text): refused unless switched on, and then over TCP only.
    handle_password_login: bool = False

    def with_overrides(self, **changes: Any) -> Settings:
        """These settings with command-line options applied, validated as loaded ones are."""
        return validate(replace(self, **{k: v for k, v in changes.items() if v is not None}))


class SettingsError(ValueError):
    """A setting that cannot be used: unknown, of the wrong type, or out of range. Raised at
    start, before anything listens; the message names the setting (and a likely intended one)."""


#: IDNODE_* variables that are not settings: read by the CLI, the tests and the deploy files.
NOT_SETTINGS = frozenset({"IDNODE_CONFIG", "IDNODE_API_KEY", "IDNODE_TEST_DSN",
                          "IDNODE_TEST_DEPS", "IDNODE_CHROMIUM", "IDNODE_SHARED_DIR",
                          "IDNODE_HANDLE_NET_SRC", "IDNODE_DB_PASSWORD",
                          "IDNODE_REPLICATION_PASSWORD"})
_NOT_SETTINGS_PREFIXES = ("IDNODE_BENCH_",)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PORT = (0, 65535)
_PORT_OR_OFF = (-1, 65535)
#: Inclusive bounds of numeric settings. Every other number must be >= 0.
RANGES: dict[str, tuple[float, float]] = {
    "embedded_pg_port": (1, 65535), "http_port": _PORT, "grpc_port": _PORT,
    "metrics_port": _PORT, "handle_port": _PORT, "top_epp_port": _PORT_OR_OFF,
    "top_escrow_port": _PORT_OR_OFF, "workers": (1, 1024), "grpc_workers": (0, 1023), "db_pool_max": (1, 10_000),
    "cache_max_entries": (1, 1 << 40), "max_batch_register": (1, 10_000_000),
    "max_batch_resolve": (1, 10_000_000), "max_value_bytes": (1, 1 << 31),
    "max_record_bytes": (1, 1 << 31), "grpc_max_message_bytes": (1024, (1 << 31) - 1),
    "grpc_anonymous_max_message_bytes": (0, (1 << 31) - 1), "sync_batch": (1, 1_000_000),
    "heartbeat_interval": (0.001, 86400 * 365), "outbox_prune_interval": (0.001, 86400 * 365),
    "http_max_pipeline": (1, 1 << 20), "http_read_chunk": (512, 1 << 26),
    "http_max_connections": (1, 1 << 24), "http_backlog": (1, 1 << 24),
    "handle_max_connections": (1, 1 << 24), "handle_max_inflight": (1, 1 << 24),
    "remote_locations_max": (1, 1 << 32), "stats_max_prefixes": (1, 1 << 32),
    # negative: signatures issued already expired (how tests exercise expiry)
    "handle_signature_days": (-3650, 3650), "db_statement_timeout": (0.001, 86400),
    "db_connect_timeout": (0.001, 3600), "db_acquire_timeout": (0.001, 3600),
    "db_query_timeout": (0.001, 3600), "db_retry_interval": (0.01, 3600),
}


def configured(name: str, path: str | os.PathLike[str] | None = None,
               environ: Mapping[str, str] | None = None) -> bool:
    """Whether setting `name` is given explicitly (IDNODE_* variable or the TOML file),
    rather than left at its default."""
    env = os.environ if environ is None else environ
    if "IDNODE_" + name.upper() in env:
        return True
    path = path or env.get("IDNODE_CONFIG")
    if path:
        with open(path, "rb") as fh:
            return name in tomllib.load(fh)
    return False


def load(path: str | os.PathLike[str] | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults, then the TOML file (`path` or $IDNODE_CONFIG), then IDNODE_*;
    validated (SettingsError names the setting at fault)."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = path or env.get("IDNODE_CONFIG")
    if path:
        with open(path, "rb") as fh:
            raw.update(tomllib.load(fh))
    names = {"IDNODE_" + f.name.upper(): f.name for f in fields(Settings)}
    stray = sorted(k for k in env if k.startswith("IDNODE_") and k not in names
                   and k not in NOT_SETTINGS and not k.startswith(_NOT_SETTINGS_PREFIXES))
    if stray:
        raise SettingsError("unknown variable(s): " + "; ".join(
            _unknown(k, list(names)) for k in stray))
    for key, name in names.items():
        if key in env:
            raw[name] = env[key]
    return validate(_coerce(raw))


def _unknown(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"{name} (did you mean {close[0]}?)" if close else name


def _coerce(raw: dict[str, Any]) -> Settings:
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SettingsError("unknown setting(s): " + ", ".join(
            _unknown(k, list(known)) for k in unknown))
    kwargs: dict[str, Any] = {}
    defaults = Settings()
    for name, value in raw.items():
        kind = type(getattr(defaults, name))
        kwargs[name] = _convert(name, kind, value)
    return Settings(**kwargs)


def _convert(name: str, kind: type, value: Any) -> Any:
    bad = SettingsError(f"setting {name}: {value!r} is not a valid {kind.__name__}"
                        + (" (true or false)" if kind is bool else ""))
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise bad
    if kind is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise bad
        return Path(value)
    if kind in (int, float) and isinstance(value, bool):
        raise bad  # TOML true is not the number 1
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise bad
    if kind is str and not isinstance(value, str):
        raise bad  # a TOML number where text is expected is a mistake, not a string
    try:
        return kind(value.strip() if isinstance(value, str) and kind is not str else value)
    except (TypeError, ValueError):
        raise bad from None


def validate(s: Settings) -> Settings:
    """`s`, checked: numbers within RANGES (others >= 0) and finite, known log levels, a pool
    whose minimum is within its maximum. Raises SettingsError naming the first fault."""
    for f in fields(Settings):
        value = getattr(s, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low, high = RANGES.get(f.name, (0, math.inf))
        if not math.isfinite(value) or not low <= value <= high:
            bound = f"between {low:g} and {high:g}" if high != math.inf else f">= {low:g}"
            raise SettingsError(f"setting {f.name}: {value!r} is out of range ({bound})")
    if s.log_level.upper() not in _LOG_LEVELS:
        raise SettingsError(f"setting log_level: {s.log_level!r} is not one of "
                            f"{', '.join(_LOG_LEVELS)}")
    if s.grpc_workers and s.grpc_workers >= s.workers:
        raise SettingsError(f"setting grpc_workers: {s.grpc_workers} leaves no worker of "
                            f"{s.workers} for HTTP (it must be below workers)")
    if s.db_pool_min > s.db_pool_max:
        raise SettingsError(f"setting db_pool_min: {s.db_pool_min} is above db_pool_max "
                            f"({s.db_pool_max})")
    return s


__all__ = ["Settings", "SettingsError", "load", "validate"]
