"""Errors → gRPC status: what travels in the trailers is bounded."""
from __future__ import annotations

from urllib.parse import quote

from idnode.api.grpc.status import MAX_VIOLATIONS, to_status
from idnode.core.errors import InvalidArgument, NotFound, TemplateViolation


def _trailer_bytes(exc: Exception) -> int:
    status = to_status(exc)  # type: ignore[arg-type]
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    # grpc-message is percent-encoded UTF-8; the details go base64-encoded.
    return len(quote(status.details.encode(), safe="")) + (len(details) + 2) // 3 * 4


def test_error_trailers_stay_under_what_grpc_clients_accept() -> None:
    """A client's 8 KiB limit on received metadata: past it the call fails with an unrelated
    RESOURCE_EXHAUSTED ("Stream removed"), as a NOT_FOUND quoting a 5,000-character key id
    did before the texts were bounded."""
    huge = "长" * 5000
    worst = [InvalidArgument(huge, field=huge, identifier=huge),
             NotFound(f"no key {huge}", field="key_id"),
             TemplateViolation([(f"records[{i}].values.{huge}", huge) for i in range(50)])]
    for exc in worst:
        assert _trailer_bytes(exc) < 7000, type(exc).__name__
    many = to_status(worst[2])
    assert many.code.name == "INVALID_ARGUMENT"
    assert "…" in many.details and len(many.details.encode()) <= 512


def test_short_errors_pass_whole() -> None:
    exc = TemplateViolation([(f"records[0].values[{i}]", f"missing {i}") for i in range(3)])
    status = to_status(exc)
    assert status.details == exc.message and "…" not in status.details
    assert MAX_VIOLATIONS >= 3
