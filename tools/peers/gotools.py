"""Go programs from the Go module proxy, built once at a pinned version into the cache.

`go install MODULE@VERSION` with GOBIN pointing into the cache: the binary is reused by every
later run, and a half-finished build never counts, since the binary is renamed into place
only when `go install` succeeded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.localcluster.artifacts import cache_root


class GoToolError(RuntimeError):
    """A Go tool could not be installed; the message says what to install or check."""


@dataclass(frozen=True)
class GoTool:
    """A command of a Go module, at one version."""

    module: str  # the package path of the command, e.g. github.com/x/y/cmd/y
    version: str

    @property
    def name(self) -> str:
        return self.module.rsplit("/", 1)[-1]


GRPCURL = GoTool("github.com/fullstorydev/grpcurl/cmd/grpcurl", "v1.9.4")


def installed(tool: GoTool, root: Path | None = None) -> Path:
    """The tool's binary, installed first if this cache does not hold it yet."""
    target = (root or cache_root()) / "go" / f"{tool.name}-{tool.version}" / tool.name
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = shutil.which("go")
    if go is None:
        raise GoToolError(
            f"`go` is not on PATH; install Go (Debian: apt-get install golang) so {tool.name} "
            "can be built from the Go module proxy"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        env = {**os.environ, "GOBIN": work, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        done = subprocess.run(
            [go, "install", f"{tool.module}@{tool.version}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=1200,
        )
        built = Path(work) / tool.name
        if done.returncode != 0 or not built.is_file():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise GoToolError(f"go install {tool.module}@{tool.version} failed:\n{tail}")
        built.rename(target)
    return target
