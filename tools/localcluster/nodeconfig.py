"""What one local node is: its addresses, ports, directories, cassandra.yaml, logback and JVM flags.

Everything here is pure: it describes a node and writes its config files; starting processes
is `cluster.py`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tools.localcluster.artifacts import CassandraJars

#: JMX listens on 127.0.0.1 for every node, so the port must differ per node (ccm's 7x00 scheme).
JMX_PORT_BASE = 7000
CQL_PORT = 9042
STORAGE_PORT = 7000
DEFAULT_HEAP_MB = 512
#: The superuser Cassandra creates at first start when an authenticator is on.
DEFAULT_SUPERUSER = ("cassandra", "cassandra")

# JDK 17 module flags from Cassandra 5.0's jvm17-server.options.
_ADD_EXPORTS = (
    "java.base/jdk.internal.misc",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi",
    "java.management/com.sun.jmx.remote.security",
    "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server",
    "java.sql/java.sql",
    "java.base/java.lang.ref",
    "jdk.unsupported/sun.misc",
)
_ADD_OPENS = (
    "java.base/java.lang.module",
    "java.base/jdk.internal.loader",
    "java.base/jdk.internal.ref",
    "java.base/jdk.internal.reflect",
    "java.base/jdk.internal.math",
    "java.base/jdk.internal.module",
    "java.base/jdk.internal.util.jar",
    "jdk.management/com.sun.management.internal",
    "java.base/sun.nio.ch",
    "java.base/java.io",
    "java.base/java.lang.reflect",
    "java.base/java.lang",
    "java.base/java.util",
    "java.base/java.nio",
)


def module_flags() -> list[str]:
    flags: list[str] = []
    for module in _ADD_EXPORTS:
        flags += ["--add-exports", f"{module}=ALL-UNNAMED"]
    for module in _ADD_OPENS:
        flags += ["--add-opens", f"{module}=ALL-UNNAMED"]
    return flags


def balanced_token(index: int, count: int) -> int:
    """Murmur3 token for node `index` (0-based) of `count`, spread evenly over the ring."""
    return index * (2**64 // count) - 2**63


@dataclass(frozen=True)
class NodeSpec:
    """One node of a local cluster; `number` counts from 1, its address is 127.0.0.<octet>."""

    number: int
    count: int
    root: Path
    cluster_name: str
    first_octet: int = 1
    heap_mb: int = DEFAULT_HEAP_MB
    authenticator: str | None = None  # e.g. "PasswordAuthenticator"; None: Cassandra's default
    client_tls_pem: Path | None = None  # the node's key and certificate: CQL takes TLS too

    def client_encryption_yaml(self) -> str:
        """CQL over TLS from a PEM bundle (no keystore, so no keytool); `optional` keeps plain
        text working on the same port, so one node serves clients of either kind."""
        if self.client_tls_pem is None:
            return ""
        return f"""client_encryption_options:
  enabled: true
  optional: true
  require_client_auth: false
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: {self.client_tls_pem}
"""

    @property
    def name(self) -> str:
        return f"node{self.number}"

    @property
    def octet(self) -> int:
        return self.first_octet + self.number - 1

    @property
    def address(self) -> str:
        return f"127.0.0.{self.octet}"

    @property
    def jmx_port(self) -> int:
        return JMX_PORT_BASE + 100 * self.octet

    @property
    def cql_port(self) -> int:
        return CQL_PORT

    @property
    def home(self) -> Path:
        return self.root / self.name

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def commitlog_dir(self) -> Path:
        return self.home / "commitlog"

    @property
    def hints_dir(self) -> Path:
        return self.home / "hints"

    @property
    def saved_caches_dir(self) -> Path:
        return self.home / "saved_caches"

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "system.log"

    @property
    def stdout_file(self) -> Path:
        return self.log_dir / "stdout.log"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"

    def seeds(self) -> str:
        return ",".join(f"127.0.0.{self.first_octet + i}:{STORAGE_PORT}" for i in range(self.count))

    def cassandra_yaml(self) -> str:
        token = balanced_token(self.number - 1, self.count)
        auth = f"authenticator: {self.authenticator}\n" if self.authenticator else ""
        return f"""# Written by tools/localcluster for {self.name} of {self.cluster_name}.
cluster_name: '{self.cluster_name}'
num_tokens: 1
initial_token: {token}
allocate_tokens_for_local_replication_factor: null
auto_bootstrap: false
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{self.seeds()}"
listen_address: {self.address}
rpc_address: {self.address}
storage_port: {STORAGE_PORT}
native_transport_port: {CQL_PORT}
start_native_transport: true
data_file_directories:
  - {self.data_dir}
commitlog_directory: {self.commitlog_dir}
hints_directory: {self.hints_dir}
saved_caches_directory: {self.saved_caches_dir}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
incremental_backups: true
auto_snapshot: false
snapshot_before_compaction: false
concurrent_compactors: 1
compaction_throughput: 0MiB/s
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 8MiB
counter_cache_size: 4MiB
prepared_statements_cache_size: 8MiB
hinted_handoff_enabled: true
dynamic_snitch: false
read_request_timeout: 10000ms
write_request_timeout: 10000ms
request_timeout: 20000ms
{auth}{self.client_encryption_yaml()}"""

    def logback_xml(self) -> str:
        return f"""<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{self.log_file}</file>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.datastax" level="WARN"/>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""

    def write_config(self) -> None:
        for directory in (
            self.data_dir,
            self.commitlog_dir,
            self.hints_dir,
            self.saved_caches_dir,
            self.conf_dir,
            self.log_dir,
            self.tmp_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "cassandra.yaml").write_text(self.cassandra_yaml())
        (self.conf_dir / "logback.xml").write_text(self.logback_xml())

    def java_command(self, java: str, jars: CassandraJars) -> list[str]:
        return [
            java,
            f"-javaagent:{jars.jamm_jar}",
            *module_flags(),
            f"-Xms{self.heap_mb // 2}M",
            f"-Xmx{self.heap_mb}M",
            "-Xss256k",
            "-XX:+UseG1GC",
            "-XX:+HeapDumpOnOutOfMemoryError",
            f"-XX:HeapDumpPath={self.log_dir}",
            "-XX:ActiveProcessorCount=2",
            "-Djava.net.preferIPv4Stack=true",
            "-Djdk.attach.allowAttachSelf=true",
            "-Dio.netty.tryReflectionSetAccessible=true",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.config={(self.conf_dir / 'cassandra.yaml').as_uri()}",
            f"-Dlogback.configurationFile={self.conf_dir / 'logback.xml'}",
            f"-Dcassandra.logdir={self.log_dir}",
            f"-Dcassandra.storagedir={self.home}",
            f"-Dcassandra.jmx.local.port={self.jmx_port}",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.superuser_setup_delay_ms=0",
            f"-Djava.io.tmpdir={self.tmp_dir}",
            f"-Djna.tmpdir={self.tmp_dir}",
            f"-Dlocalcluster.node={self.home}",
            "-cp",
            jars.classpath,
            "org.apache.cassandra.service.CassandraDaemon",
        ]


_QUIET_LOGBACK = """<configuration scan="false">
  <appender name="ERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%-5level %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="ERR"/></root>
</configuration>
"""


def tools_logback(jars: CassandraJars) -> Path:
    """A quiet logback config for client tools such as nodetool (the jar ships none)."""
    path = jars.lib_dir.parent / "logback-tools.xml"
    if not path.exists():
        path.write_text(_QUIET_LOGBACK)
    return path


def nodetool_jvm_table(java: str, jars: CassandraJars) -> str:
    """The server's [nodes.nodetool_jvm] table for these jars: nodetool in one resident JVM."""
    return (
        f'\n[nodes.nodetool_jvm]\nclasspath = "{jars.lib_dir}/*"\njava = "{java}"\n'
        f'options = ["-Dlogback.configurationFile={tools_logback(jars)}"]\n'
    )


def nodetool_command(
    java: str, jars: CassandraJars, host: str | None = None, jmx_port: int | None = None
) -> list[str]:
    """The nodetool JVM command line, with `-h HOST -p PORT` when given; append its arguments."""
    target = [] if host is None else ["-h", host]
    target += [] if jmx_port is None else ["-p", str(jmx_port)]
    return [
        java,
        *module_flags(),
        "-Xmx128M",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xshare:auto",
        f"-Dlogback.configurationFile={tools_logback(jars)}",
        "-cp",
        jars.classpath,
        "org.apache.cassandra.tools.NodeTool",
        *target,
    ]
