"""Generates idnode/v1 (Python gRPC stubs) from proto/ with grpc_tools.protoc: `make proto`."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted((PROTO_DIR / "idnode" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Writes `<out_dir>/idnode/v1/*_pb2*.py(i)` for every proto file."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_DIR)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> None:
    generate(ROOT)
    print("generated", *(p.name for p in sorted((ROOT / "idnode" / "v1").glob("*_pb2*"))), file=sys.stderr)


if __name__ == "__main__":
    main()
