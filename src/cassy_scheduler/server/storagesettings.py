"""The `[storage]` table as the server uses it: the URI checked by opening it, each option
checked against the URI's provider, and the credentials it names read now, so a missing
variable stops the start with the key to fix, not the first backup at 00:30."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem
from cassy_scheduler.configfile.locate import TableProblems, line_of
from cassy_scheduler.configfile.secrets import Secret
from cassy_scheduler.server.settingsfile import ClientEncryptionTable, StorageTable
from cassy_scheduler.storage import UnsupportedStorageError, open_storage
from cassy_scheduler.storage.envelope import parse_key
from cassy_scheduler.storage.errors import StorageOptionRefusedError
from cassy_scheduler.storage.options import MIN_PART_SIZE, StorageOptions

MAX_PART_SIZE = 512 << 20

#: Each credential key of the table: the providers it serves and obstore's name for it.
_CREDENTIALS = {
    "access_key_id": (("s3",), "access_key_id"),
    "secret_access_key": (("s3",), "secret_access_key"),
    "session_token": (("s3",), "session_token"),
    "account_key": (("az",), "account_key"),
    "sas_token": (("az",), "sas_key"),
}
#: Options that mean something to some providers only.
_PROVIDER_OPTIONS = {
    "path_style": ("s3",),
    "encryption": ("s3",),
    "kms_key_id": ("s3",),
    "region": ("s3",),
    "account": ("az",),
    "service_account_file": ("gs",),
}
_EXAMPLE = 'uri = "file:///var/backups/cassandra" (or "s3://BUCKET/PREFIX", "az://...", "gs://...")'


def storage_options(
    table: StorageTable, path: Path, lines: dict[tuple[str, ...], int]
) -> tuple[StorageOptions, list[ConfigProblem]]:
    """The table's terms, with every problem pinned to its key's line."""
    problem = TableProblems(str(path), lines, "storage")
    scheme = table.uri.partition("://")[0].lower()
    problems = _misplaced(table, scheme, problem)
    client_keys, key_problems = _client_keys(table.client_encryption, path, lines)
    problems += key_problems
    credentials, credential_problems = _credentials(table, scheme, path.parent, problem)
    problems += credential_problems
    if table.encryption == "kms" and table.kms_key_id is None:
        problems.append(
            problem("encryption", "SSE-KMS needs a key", 'add kms_key_id = "arn:aws:kms:..."')
        )
    if table.kms_key_id is not None and table.encryption != "kms":
        problems.append(
            problem("kms_key_id", "a KMS key without SSE-KMS", 'add encryption = "kms"')
        )
    if not MIN_PART_SIZE <= table.part_size <= MAX_PART_SIZE:
        problems.append(
            problem(
                "part_size",
                f"{table.part_size} bytes is outside 5 MiB to 512 MiB (object stores refuse "
                "smaller parts; a file up to part_size is held in memory, 4 files at once)",
                'write e.g. part_size = "8MiB"',
            )
        )
    if table.max_bandwidth is not None and table.max_bandwidth < 1:
        problems.append(
            problem("max_bandwidth", "a rate of zero", 'remove it, or write e.g. "200MB/s"')
        )
    if table.endpoint is not None and not table.endpoint.startswith(("http://", "https://")):
        problems.append(
            problem(
                "endpoint",
                f"{table.endpoint!r} is not an http(s) URL",
                'write e.g. endpoint = "https://minio.example.com:9000"',
            )
        )
    options = StorageOptions(
        uri=table.uri,
        endpoint=table.endpoint,
        region=table.region,
        path_style=table.path_style,
        storage_class=table.storage_class,
        encryption=table.encryption,
        kms_key_id=table.kms_key_id,
        account=table.account,
        concurrency=table.concurrency,
        part_size=table.part_size,
        max_bandwidth=table.max_bandwidth,
        retry_timeout_s=table.retry_timeout.total_seconds(),
        credentials=MappingProxyType(credentials),
        client_keys=client_keys,
    )
    if not problems:
        try:
            open_storage(options)
        except StorageOptionRefusedError as exc:  # not the URI: a value of another key
            problems.append(
                problem(
                    "uri",
                    str(exc),
                    "check the values of this table's other keys and the credentials they "
                    "name (a key's format, the region, the account)",
                )
            )
        except UnsupportedStorageError as exc:
            problems.append(problem("uri", str(exc), _EXAMPLE))
    return options, problems


def _misplaced(table: StorageTable, scheme: str, problem: TableProblems) -> list[ConfigProblem]:
    """Options the URI's provider would ignore: an operator who set them expects an effect."""
    problems = []
    object_store = scheme in ("s3", "az", "gs")
    for key, schemes in _PROVIDER_OPTIONS.items():
        if getattr(table, key) is not None and scheme not in schemes:
            for_what = " or ".join(f"{s}://" for s in schemes)
            problems.append(problem(key, f"applies to {for_what} storage only", "remove it"))
    if not object_store:
        for key in ("endpoint", "storage_class", "max_bandwidth"):
            if getattr(table, key) is not None:
                problems.append(problem(key, "applies to object storage only", "remove it"))
    return problems


def _credentials(
    table: StorageTable, scheme: str, base: Path, problem: TableProblems
) -> tuple[dict[str, str], list[ConfigProblem]]:
    """obstore's credential keys, read from their `*_env` / `*_file` keys."""
    found: dict[str, str] = {}
    problems = []
    for name, (schemes, obstore_key) in _CREDENTIALS.items():
        env = getattr(table, f"{name}_env")
        file = getattr(table, f"{name}_file")
        if getattr(table, name) is not None:
            problems.append(
                problem(
                    name,
                    "credentials are not written in the config file (it gets copied and committed)",
                    f'remove it and set {name}_env = "VARIABLE" or {name}_file = "/path"',
                )
            )
            continue
        if env is None and file is None:
            continue
        key = f"{name}_env" if env is not None else f"{name}_file"
        if env is not None and file is not None:
            problems.append(problem(key, f"{name}_env and {name}_file are both given", "keep one"))
            continue
        if scheme not in schemes:
            problems.append(problem(key, f"applies to {schemes[0]}:// storage only", "remove it"))
            continue
        secret = (
            Secret(f"storage.{key}", problem.file, env=env)
            if env is not None
            else Secret(f"storage.{key}", problem.file, file=base / file)
        )
        try:
            found[obstore_key] = secret.resolve()
        except ConfigError as exc:
            problems += [problem(key, p.message, p.hint) for p in exc.problems]
    if table.service_account_file is not None:
        key_file = base / table.service_account_file
        if not key_file.is_file():
            problems.append(
                problem(
                    "service_account_file",
                    f"{key_file} is not a readable file",
                    "give the path of the service account's JSON key",
                )
            )
        else:
            found["service_account"] = str(key_file)
    return found, problems


def _client_keys(
    table: ClientEncryptionTable | None, path: Path, lines: dict[tuple[str, ...], int]
) -> tuple[tuple[bytes, ...], list[ConfigProblem]]:
    """The current key (key_file or key_env) and the previous ones, read and checked now:
    a server that cannot read its key must not start, nor store a byte unsealed."""
    if table is None:
        return (), []

    def problem(key: str, message: str, hint: str) -> ConfigProblem:
        where = ("storage", "client_encryption", key)
        return ConfigProblem(str(path), line_of(lines, where), ".".join(where), message, hint)

    given = [key for key in ("key_file", "key_env") if getattr(table, key)]
    if len(given) != 1:
        message = "key_file and key_env are both given" if given else "no key is given"
        hint = 'write key_file = "/etc/cassy-scheduler/backup.key" (cassy-scheduler key makes one)'
        return (), [problem(given[-1] if given else "key_file", message, hint)]
    sources = [(given[0], table.key_file, table.key_env)]
    sources += [("previous_key_files", name, None) for name in table.previous_key_files]
    keys: list[bytes] = []
    problems: list[ConfigProblem] = []
    for field_name, file, env in sources:
        if env is not None:
            secret = Secret(f"storage.client_encryption.{field_name}", str(path), env=env)
        else:
            assert file is not None
            located = Path(file).expanduser()
            located = located if located.is_absolute() else path.parent / located
            secret = Secret(f"storage.client_encryption.{field_name}", str(path), file=located)
        try:
            keys.append(parse_key(secret.resolve(), env or str(file)))
        except ConfigError as exc:
            problems += [problem(field_name, p.message, p.hint) for p in exc.problems]
        except ValueError as exc:
            problems.append(problem(field_name, str(exc), "write the key's 64 hex digits into it"))
    if len(set(keys)) != len(keys):
        problems.append(
            problem("previous_key_files", "a key is listed twice", "list each key once")
        )
    return tuple(keys), problems
