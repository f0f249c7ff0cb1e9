"""What every verb shares: the --config option, loading it (exit 2 when it is unusable), and
printing for people (rich) or machines (--json).

The consoles print text as it is: config values, errors and server replies hold brackets
(`[defaults]`, `[notify.ops]`) that Rich markup would swallow, so colour comes only from
`Text` objects built here and in the verbs, never from markup in strings."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:  # the verbs import what they run when they run (see cli.py)
    from rich.console import Console
    from rich.text import Text

    from cassy_scheduler.config.model import SchedulerConfig
    from cassy_scheduler.storage import Storage

CONFIG_ENV = "CASSY_SCHEDULER_CONFIG"


class Exit(IntEnum):
    """Exit codes shared by the verbs that do not define their own (check and backup do)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 5


def config_option() -> Any:
    return typer.Option(
        ...,
        "--config",
        "-c",
        metavar="FILE",
        envvar=CONFIG_ENV,
        help="The scheduler's TOML config file.",
        show_default=False,
    )


def json_option() -> Any:
    return typer.Option(False, "--json", help="Print JSON for machines instead of tables.")


def out() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, markup=False, emoji=False)


def err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Text from plain pieces and (text, style) pairs; nothing in them is read as markup."""
    from rich.text import Text

    return Text.assemble(*parts)


def load(path: Path) -> SchedulerConfig:
    """The config, or exit 2 with every problem named."""
    from cassy_scheduler.config.loader import load_config
    from cassy_scheduler.configfile.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)


def fail(message: str, code: int) -> NoReturn:
    err().print(styled(("error:", "bold red"), f" {message}"))
    raise typer.Exit(code)


def storage_from(uri: str | None, server_config: Path | None, needed_for: str) -> Storage:
    """The storage named by --storage URI (the provider's own endpoint and credential
    chain) or by the built-in server's config (its whole [storage] table: endpoint,
    credentials); a usage error naming both when neither is given."""
    from cassy_scheduler.storage import StorageError, open_storage
    from cassy_scheduler.storage.options import StorageOptions

    where: str | StorageOptions | None = uri
    if uri is None and server_config is not None:
        from cassy_scheduler.configfile.errors import ConfigError
        from cassy_scheduler.server.settings import load_server_settings

        try:
            where = load_server_settings(server_config).storage
        except ConfigError as exc:
            fail(str(exc), Exit.USAGE)
    if where is None:
        fail(f"{needed_for}: give --storage URI or --server-config FILE", Exit.USAGE)
    try:
        return open_storage(where)
    except StorageError as exc:
        fail(str(exc), Exit.USAGE)


@contextmanager
def server_errors() -> Iterator[None]:
    """Turn server and state errors into one line and an exit code."""
    from cassy_scheduler.client import CassyError
    from cassy_scheduler.scheduling import SchedulingError
    from cassy_scheduler.statefile import StateError

    try:
        yield
    except CassyError as exc:
        fail(str(exc), Exit.UNREACHABLE if exc.is_transient else Exit.FAILED)
    except (SchedulingError, StateError) as exc:
        fail(str(exc), Exit.FAILED)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def when(moment: datetime | None, zone: tzinfo = UTC) -> str:
    """A moment for tables, to the second, in `zone` (UTC unless a job's zone is given)."""
    if moment is None:
        return "-"
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")
