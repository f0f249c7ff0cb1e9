"""Generate the protocol package's stubs from proto/*.proto (`make proto` runs this).

protoc writes `import cassy_pb2`, which only works when the output directory is on sys.path;
the generated modules live inside a package, so that import is rewritten to a relative one.
Output depends only on the .proto and the tool versions, so a test can regenerate and compare.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_FILE = REPO_ROOT / "proto" / "cassy.proto"
#: Our own calls (package cassy_scheduler.v1), kept apart so cassy.proto stays Cassy's.
EXTENSION_FILES = (REPO_ROOT / "proto" / "backups.proto", REPO_ROOT / "proto" / "access.proto")
OUTPUT_DIR = REPO_ROOT / "src" / "cassy_scheduler" / "protocol" / "generated"
GENERATED_FILES = (
    "__init__.py",
    "cassy_pb2.py",
    "cassy_pb2.pyi",
    "cassy_pb2_grpc.py",
    "cassy_pb2_grpc.pyi",
    "backups_pb2.py",
    "backups_pb2.pyi",
    "backups_pb2_grpc.py",
    "backups_pb2_grpc.pyi",
    "access_pb2.py",
    "access_pb2.pyi",
    "access_pb2_grpc.py",
    "access_pb2_grpc.pyi",
)

_INIT_TEXT = '"""Code generated from proto/*.proto by tools/genproto.py: run `make proto`."""\n'
_ABSOLUTE_IMPORT = re.compile(r"^import (cassy_pb2|backups_pb2|access_pb2) as (\w+)$", re.MULTILINE)


class GenerationError(RuntimeError):
    """protoc or one of its plugins failed."""


def _plugin(name: str) -> str:
    """Locate a protoc plugin installed beside the running interpreter."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise GenerationError(f"{name} not found; install the dev dependencies (make install)")
    return found


def _run_protoc(proto_file: Path, out_dir: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={proto_file.parent}",
        f"--proto_path={include}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        str(proto_file),
    ]
    code = protoc.main(args)
    if code != 0:
        raise GenerationError(f"protoc failed on {proto_file} with exit code {code}")


def generate(out_dir: Path = OUTPUT_DIR, proto_file: Path = PROTO_FILE) -> list[Path]:
    """Write every generated file into out_dir and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genproto-") as scratch:
        _run_protoc(proto_file, Path(scratch))
        for extension in EXTENSION_FILES:
            _run_protoc(extension, Path(scratch))
        written = []
        for name in GENERATED_FILES:
            if name == "__init__.py":
                text = _INIT_TEXT
            else:
                raw = (Path(scratch) / name).read_text(encoding="utf-8")
                text = _ABSOLUTE_IMPORT.sub(r"from . import \1 as \2", raw)
            target = out_dir / name
            target.write_text(text, encoding="utf-8", newline="\n")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUTPUT_DIR, help="output directory")
    options = parser.parse_args(argv)
    for path in generate(options.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
