"""Finding a JDK that Cassandra 5.0 runs on (11 or 17; 18+ break its security manager)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

from tools.localcluster.errors import LocalClusterError

SUPPORTED_MAJORS = (17, 11)


def java_major(java: str) -> int | None:
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return None
    major = int(match.group(1))
    # Java 8 and older say "1.8.0_…".
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """$CASSANDRA_JAVA, $JAVA_HOME, `java` on PATH, then /usr/lib/jvm: the first of JDK 17/11."""
    candidates: list[str] = []
    if os.environ.get("CASSANDRA_JAVA"):
        candidates.append(os.environ["CASSANDRA_JAVA"])
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    for wanted in SUPPORTED_MAJORS:
        candidates += sorted(glob.glob(f"/usr/lib/jvm/*{wanted}*/bin/java"))
    seen: list[str] = []
    for java in candidates:
        found_major = java_major(java)
        if found_major in SUPPORTED_MAJORS:
            return java
        seen.append(f"{java} (Java {found_major})")
    found = ", ".join(seen) or "none"
    raise LocalClusterError(
        f"Cassandra 5.0 needs JDK 17 (or 11); found: {found}. Install one "
        "(Debian: apt-get install openjdk-17-jdk-headless) or set CASSANDRA_JAVA to its java."
    )
