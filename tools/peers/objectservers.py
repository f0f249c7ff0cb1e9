"""Object-store servers on loopback for tests, the demo and benchmarks: moto's S3 server
(PyPI), Azurite for Azure Blob (npm, into the cache), fake-gcs-server for Google Cloud
Storage and SeaweedFS for S3 at speed (both from the Go module proxy, built into the cache).

Each runs as a child process in its own session, logging to a file; `stop()` ends it by its
PID. `storage_table()` is the `[storage]` table (TOML lines) a server config needs to use it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.localcluster.artifacts import cache_root
from tools.peers.gotools import GoTool, GoToolError, installed
from tools.peers.processes import spawn, stop_group

FAKE_GCS = GoTool("github.com/fsouza/fake-gcs-server", "v1.56.1")
AZURITE_VERSION = "3.37.0"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"

#: Azurite's documented development account and key (public, the same for every install).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: The keys tests give moto and SeaweedFS (both accept any).
S3_ACCESS_KEY = "cassy-test-key"
S3_SECRET_KEY = "cassy-test-secret"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ObjectServer:
    """A running object-store server; `endpoint` is its base URL."""

    kind: str
    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # what a client needs to reach it

    def stop(self) -> None:
        stop_group(self.process)


def _start(command: list[str], log: Path, port: int, kind: str, endpoint: str) -> ObjectServer:
    process = spawn(command, log)
    server = ObjectServer(kind, endpoint, process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited at start:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{kind} did not listen on port {port} within 120 s; see {log}")


def start_moto(work: Path, python: str) -> ObjectServer:
    """moto's S3 in server mode (threaded, in memory)."""
    port = free_port()
    command = [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return _start(command, work / "moto.log", port, "moto", f"http://127.0.0.1:{port}")


def azurite_bin(root: Path | None = None) -> Path:
    """Azurite's blob server, installed from npm into the cache on first use."""
    target = (root or cache_root()) / "npm" / f"azurite-{AZURITE_VERSION}"
    binary = target / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH; install Node.js to run Azurite")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".install-") as work:
        staged = Path(work) / "azurite"  # renamed into place whole, once npm succeeded
        staged.mkdir()
        _run(
            [npm, "install", "--no-audit", "--no-fund", f"azurite@{AZURITE_VERSION}"],
            what=f"npm install azurite@{AZURITE_VERSION}",
            cwd=staged,
            timeout=900,
        )
        staged.rename(target)
    return binary


def start_azurite(work: Path) -> ObjectServer:
    port = free_port()
    data = work / "azurite"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        str(azurite_bin()),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(data),
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
    ]
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    return _start(command, work / "azurite.log", port, "azurite", endpoint)


def start_fake_gcs(work: Path) -> ObjectServer:
    """fake-gcs-server, in memory. It serves GCS's JSON API and the XML API's reads, lists
    and deletes, but not the XML API's writes that obstore sends: tests write through its
    JSON upload API (`gcs_upload`) and read through obstore."""
    binary = installed(FAKE_GCS)
    port = free_port()
    host = f"127.0.0.1:{port}"
    command = [
        str(binary),
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-public-host",
        host,
        "-log-level",
        "warn",
    ]
    return _start(command, work / "fake-gcs.log", port, "fake-gcs", f"http://{host}")


def s3_create_bucket(server: ObjectServer, bucket: str) -> None:
    s3_client(server).create_bucket(Bucket=bucket)


def s3_client(server: ObjectServer) -> Any:
    """A boto3 client of the server, for set-up and for checks from outside our code."""
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - tests and benchmarks only

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
    )


def azure_container(server: ObjectServer, container: str) -> Any:
    """A ContainerClient of Azurite's container, created when absent."""
    from azure.core.exceptions import ResourceExistsError  # noqa: PLC0415
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    service = BlobServiceClient(
        account_url=server.endpoint,
        credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
    )
    client = service.get_container_client(container)
    with suppress(ResourceExistsError):
        client.create_container()
    return client


def gcs_create_bucket(server: ObjectServer, bucket: str) -> None:
    body = json.dumps({"name": bucket}).encode()
    _post(f"{server.endpoint}/storage/v1/b?project=test", body, "application/json")


def gcs_upload(server: ObjectServer, bucket: str, name: str, data: bytes) -> None:
    """One object through the JSON API's media upload."""
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    url = f"{server.endpoint}/upload/storage/v1/b/{bucket}/o?{query}"
    _post(url, data, "application/octet-stream")


def _post(url: str, body: bytes, content_type: str) -> None:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": content_type}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60):
        pass


def _run(
    command: list[str],
    *,
    what: str,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    error: type[RuntimeError] = RuntimeError,
) -> str:
    """Run an install or build step; its stdout, or `error` with the output's last lines."""
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise error(f"{what} failed:\n{tail}")
    return done.stdout


def seaweedfs_bin(root: Path | None = None) -> Path:
    """SeaweedFS's `weed`, built from the Go module proxy into the cache on first use
    (`go install` refuses the module for its replace directives; a build inside a writable
    copy of it works, in about 8 minutes)."""
    target = (root or cache_root()) / "go" / f"seaweedfs-{SEAWEEDFS_VERSION}" / "weed"
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None:
        raise GoToolError("`go` is not on PATH; install Go to build SeaweedFS")
    target.parent.mkdir(parents=True, exist_ok=True)
    module = f"github.com/seaweedfs/seaweedfs@{SEAWEEDFS_VERSION}"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    fetched = _run(
        [go, "mod", "download", "-json", module],
        what=f"go mod download {module}",
        env=env,
        timeout=1800,
        error=GoToolError,
    )
    source = Path(json.loads(fetched)["Dir"])
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        tree = Path(work) / "src"
        shutil.copytree(source, tree)
        for path in [tree, *tree.rglob("*")]:
            with suppress(OSError):
                path.chmod(path.stat().st_mode | 0o200)
        _run(
            [go, "build", "-o", str(Path(work) / "weed"), "./weed"],
            what="go build of SeaweedFS",
            cwd=tree,
            env=env,
            timeout=3600,
            error=GoToolError,
        )
        (Path(work) / "weed").rename(target)
    return target


def start_seaweedfs(work: Path, binary: Path | None = None) -> ObjectServer:
    """A one-process SeaweedFS (master, volume, filer, S3 gateway) on loopback; without an
    identity config its S3 gateway takes any request, signed or not."""
    weed = binary or seaweedfs_bin()
    data = work / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    ports = {name: _free_with_grpc() for name in ("master", "volume", "filer", "s3")}
    command = [
        str(weed),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        "-volume.max=0",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=1024",
    ]
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    return _start(command, work / "seaweedfs.log", ports["s3"], "seaweedfs", endpoint)


def _free_with_grpc() -> int:
    """A free port whose +10000 (where SeaweedFS puts each service's gRPC) is free too."""
    for candidate in random.sample(range(21000, 29000), 400):
        try:
            for port in (candidate, candidate + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return candidate
    raise RuntimeError("no free port pair for SeaweedFS in 21000-39000")


def s3_storage_table(endpoint: str, uri: str, *, key_env: str, secret_env: str) -> str:
    """The `[storage]` table for an S3 server on loopback; the keys are in the environment
    variables named (S3_ACCESS_KEY / S3_SECRET_KEY)."""
    return (
        "[storage]\n"
        f'uri = "{uri}"\n'
        f'endpoint = "{endpoint}"\n'
        'region = "us-east-1"\n'
        f'access_key_id_env = "{key_env}"\n'
        f'secret_access_key_env = "{secret_env}"\n'
    )
