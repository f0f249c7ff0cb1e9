"""The scheduler and the server meet only on the wire: importing one side loads no module of
the other. Each check runs in a fresh interpreter, so what this test process imported before
cannot hide a stray import. `make lint` checks the finer layers (pyproject's importlinter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCHEDULER_SIDE = (
    "cassy_scheduler.scheduling",
    "cassy_scheduler.notify",
    "cassy_scheduler.config",
    "cassy_scheduler.client",
    "cassy_scheduler.outcome",
    "cassy_scheduler.runtime",
    "cassy_scheduler.history",
    "cassy_scheduler.records",
    "cassy_scheduler.metrics",
    "cassy_scheduler.timetable",
)
SERVER_SIDE = (
    "cassy_scheduler.server",
    "cassy_scheduler.node",
    "cassy_scheduler.storage",
    "cassy_scheduler.verify",
)


def loaded_after(*modules: str) -> list[str]:
    """The cassy_scheduler modules a fresh interpreter holds after importing `modules`."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('cassy_scheduler'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    found: list[str] = json.loads(done.stdout)
    return found


def within(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


@pytest.mark.parametrize(
    "entry",
    ["cassy_scheduler.server.app", "cassy_scheduler.server.settings", "cassy_scheduler.verify"],
)
def test_the_server_loads_nothing_of_the_scheduler(entry: str) -> None:
    loaded = loaded_after(entry)
    assert entry in loaded
    assert within(loaded, SCHEDULER_SIDE) == []


@pytest.mark.parametrize(
    "entry",
    [
        "cassy_scheduler.runtime",
        "cassy_scheduler.scheduling.daemon",
        "cassy_scheduler.preflight",
        "cassy_scheduler.config.loader",
    ],
)
def test_the_scheduler_loads_nothing_of_the_server(entry: str) -> None:
    loaded = loaded_after(entry)
    assert entry in loaded
    assert within(loaded, SERVER_SIDE) == []


def test_config_does_not_load_the_engine() -> None:
    """The config is read by the engine, never the reverse (they once formed a cycle)."""
    loaded = loaded_after("cassy_scheduler.config.loader", "cassy_scheduler.config.checks")
    assert within(loaded, ("cassy_scheduler.scheduling", "cassy_scheduler.notify")) == []


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    """`cassy-scheduler backup --help` (and a verb refused for its arguments) loads the verbs
    only: gRPC, pydantic, apprise, rich and the config model come when a verb runs."""
    script = (
        "import json, sys\n"
        "from cassy_scheduler.cli import main\n"
        "sys.argv = ['cassy-scheduler', 'backup', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert "Usage: cassy-scheduler backup" in done.stdout
    loaded = set(json.loads(done.stderr))
    heavy = {
        "grpc",
        "pydantic",
        "apprise",
        "rich.console",
        "cassandra",
        "tomlkit",
        "cassy_scheduler.config.model",
        "cronsim",
    }
    assert sorted(heavy & loaded) == []
