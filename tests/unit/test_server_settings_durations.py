"""The server config writes durations as the scheduler's does ("30s", "5m"); a file from an
earlier version, with `*_seconds` numbers, still loads, with a note that says what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.server.settings import ServerSettings, load_server_settings

OLD_STYLE = """\
[server]
shutdown_grace_seconds = 45

[storage]
uri = "file:///var/backups/cassandra"

[nodes]
nodetool_timeout_seconds = 600

[cassandra]
connect_timeout_seconds = 2.5

[applications]
instances = ["127.0.0.1:20052"]
pause_timeout_seconds = 20
unpause_timeout_seconds = 4
dns_timeout_seconds = 1
"""

NEW_STYLE = """\
[server]
shutdown_grace = "45s"

[storage]
uri = "file:///var/backups/cassandra"

[nodes]
nodetool_timeout = "10m"

[cassandra]
connect_timeout = "3s"

[applications]
instances = ["127.0.0.1:20052"]
pause_timeout = "20s"
unpause_timeout = "4s"
dns_timeout = "1s"
"""


def load(tmp_path: Path, text: str) -> ServerSettings:
    path = tmp_path / "server.toml"
    path.write_text(text)
    return load_server_settings(path)


def timeouts(settings: ServerSettings) -> tuple[float | None, ...]:
    apps = settings.applications
    assert apps is not None
    return (
        settings.shutdown_grace_seconds,
        settings.nodetool_timeout_seconds,
        apps.pause_timeout_s,
        apps.unpause_timeout_s,
        apps.dns_timeout_s,
    )


def test_old_seconds_keys_load_as_before_with_a_note_each(tmp_path: Path) -> None:
    old = load(tmp_path, OLD_STYLE)
    assert timeouts(old) == timeouts(load(tmp_path, NEW_STYLE)) == (45, 600, 20, 4, 1)
    assert old.cql.connect_timeout_s == 2.5
    notes = {note.field: note for note in old.deprecations}
    assert set(notes) == {
        "server.shutdown_grace_seconds",
        "nodes.nodetool_timeout_seconds",
        "cassandra.connect_timeout_seconds",
        "applications.pause_timeout_seconds",
        "applications.unpause_timeout_seconds",
        "applications.dns_timeout_seconds",
    }
    grace = notes["server.shutdown_grace_seconds"]
    assert (grace.line, grace.hint) == (2, 'write shutdown_grace = "45s" instead')
    assert "deprecated" in grace.message
    # A fraction of a second rounds up: the new style counts whole seconds.
    assert notes["cassandra.connect_timeout_seconds"].hint.startswith(
        'write connect_timeout = "3s" instead (durations count whole seconds: 2.5 rounds up)'
    )


def test_new_style_has_no_notes(tmp_path: Path) -> None:
    assert load(tmp_path, NEW_STYLE).deprecations == ()


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (
            '[server]\nshutdown_grace = "5s"\nshutdown_grace_seconds = 5\n',
            "server.shutdown_grace_seconds",
            "shutdown_grace is given too",
        ),
        ('[server]\nshutdown_grace_seconds = "5s"\n', "server.shutdown_grace_seconds", "number"),
        ("[server]\nshutdown_grace_seconds = -1\n", "server.shutdown_grace_seconds", "from 0 to"),
        ("[server]\nshutdown_grace_seconds = inf\n", "server.shutdown_grace_seconds", "from 0 to"),
        ("[server]\nshutdown_grace_seconds = nan\n", "server.shutdown_grace_seconds", "from 0 to"),
        ("[server]\nshutdown_grace_seconds = 1e20\n", "server.shutdown_grace_seconds", "from 0 to"),
        ('[nodes]\nnodetool_timeout = "0s"\n', "nodes.nodetool_timeout", "longer than zero"),
        ("[nodes]\nnodetool_timeout = 300\n", "nodes.nodetool_timeout", "quoted string"),
    ],
)
def test_mistakes_name_the_key_written(tmp_path: Path, text: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text + '[storage]\nuri = "file:///var/backups/cassandra"\n')
    (problem,) = caught.value.problems
    assert problem.field == field
    assert problem.line is not None
    assert words in problem.message
