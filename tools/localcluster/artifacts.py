"""Cassandra's jars from Maven Central, fetched once into a cache outside the repo.

Maven does the resolving (version range, transitive dependencies); we only choose where the
jars land and remember that a fetch finished, so later runs start without touching the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.localcluster.errors import LocalClusterError

#: The newest 5.0.x that resolves; 5.0 is the line that runs on JDK 17.
DEFAULT_VERSION_RANGE = "[5.0.0,5.0.999]"
_DONE_MARKER = ".complete"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>localcluster</groupId>
  <artifactId>cassandra-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


@dataclass(frozen=True)
class CassandraJars:
    """A resolved, complete set of jars for one Cassandra version."""

    version: str
    lib_dir: Path

    @property
    def classpath(self) -> str:
        return os.pathsep.join(str(p) for p in sorted(self.lib_dir.glob("*.jar")))

    @property
    def jamm_jar(self) -> Path:
        found = sorted(self.lib_dir.glob("jamm-*.jar"))
        if not found:
            raise LocalClusterError(f"no jamm jar in {self.lib_dir}; delete it and fetch again")
        return found[-1]


def cache_root() -> Path:
    """Where jars are kept between runs: $CASSY_CACHE_DIR, else ~/.cache/cassy-scheduler."""
    configured = os.environ.get("CASSY_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cassy-scheduler"


def _version_of(lib_dir: Path) -> str | None:
    for jar in lib_dir.glob("cassandra-all-*.jar"):
        return jar.name.removeprefix("cassandra-all-").removesuffix(".jar")
    return None


def find_cached(root: Path | None = None) -> CassandraJars | None:
    """The newest complete fetch in the cache, if any."""
    base = (root or cache_root()) / "cassandra"
    if not base.is_dir():
        return None
    candidates = []
    for lib in base.glob("*/lib"):
        version = _version_of(lib)
        if (lib.parent / _DONE_MARKER).exists() and version:
            candidates.append(CassandraJars(version, lib))
    if not candidates:
        return None
    return max(candidates, key=lambda j: tuple(int(p) for p in j.version.split(".")[:3]))


def fetch(version: str | None = None, root: Path | None = None) -> CassandraJars:
    """Return cached jars, or resolve them with Maven first (needs `mvn` on PATH)."""
    wanted = version or os.environ.get("CASSANDRA_VERSION") or DEFAULT_VERSION_RANGE
    cached = find_cached(root)
    if cached and wanted in (DEFAULT_VERSION_RANGE, cached.version):
        return cached
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalClusterError(
            "Maven (`mvn`) is not on PATH; install it (Debian: apt-get install maven) so the "
            "Cassandra jars can be fetched from Maven Central"
        )
    base = (root or cache_root()) / "cassandra"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix=".fetch-") as work:
        work_dir = Path(work)
        (work_dir / "pom.xml").write_text(_POM.format(version=wanted))
        lib = work_dir / "lib"
        cmd = [mvn, "-B", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={lib}"]
        done = subprocess.run(cmd, cwd=work_dir, capture_output=True, text=True, check=False)
        resolved = _version_of(lib) if lib.is_dir() else None
        if done.returncode != 0 or resolved is None:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise LocalClusterError(
                f"Maven could not resolve org.apache.cassandra:cassandra-all:{wanted}:\n{tail}"
            )
        target = base / resolved
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        lib.rename(target / "lib")
        (target / _DONE_MARKER).write_text(wanted + "\n")
    return CassandraJars(resolved, target / "lib")
