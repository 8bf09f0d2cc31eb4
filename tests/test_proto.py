"""The generated gRPC code in idnode/v1 is what `make proto` makes from proto/ today."""
from __future__ import annotations

from pathlib import Path

from idnode import protogen


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    fresh = sorted((tmp_path / "idnode" / "v1").glob("*_pb2*"))
    assert fresh, "protoc generated nothing"
    committed = protogen.ROOT / "idnode" / "v1"
    for path in fresh:
        assert (committed / path.name).read_text() == path.read_text(), (
            f"idnode/v1/{path.name} is stale: run `make proto` and commit the result")
