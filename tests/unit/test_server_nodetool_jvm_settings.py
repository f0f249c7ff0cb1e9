"""[nodes.nodetool_jvm]: read into the executor's terms, mistakes named by key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.node.nodetooljvm import NodetoolJvm
from cassy_scheduler.server.settings import load_server_settings

STORAGE = '[storage]\nuri = "file:///var/backups/cassandra"\n'


def load(tmp_path: Path, text: str) -> NodetoolJvm | None:
    path = tmp_path / "server.toml"
    path.write_text(STORAGE + text)
    return load_server_settings(path).nodetool_jvm


def test_without_the_table_each_command_is_a_nodetool_process(tmp_path: Path) -> None:
    assert load(tmp_path, "[nodes]\n") is None


def test_the_table_names_jars_java_and_extra_options(tmp_path: Path) -> None:
    jvm = load(
        tmp_path,
        '[nodes.nodetool_jvm]\nclasspath = "/usr/share/cassandra/lib/*"\n'
        'java = "/opt/jdk17/bin/java"\noptions = ["-Xmx256M"]\n',
    )
    assert jvm == NodetoolJvm("/usr/share/cassandra/lib/*", "/opt/jdk17/bin/java", ("-Xmx256M",))


def test_relative_classpath_entries_are_relative_to_the_config_file(tmp_path: Path) -> None:
    jvm = load(tmp_path, '[nodes.nodetool_jvm]\nclasspath = "cassandra/lib/*:/opt/extra.jar"\n')
    assert jvm is not None
    assert jvm.classpath == f"{tmp_path}/cassandra/lib/*:/opt/extra.jar"


def test_java_defaults_to_the_one_on_path(tmp_path: Path) -> None:
    jvm = load(tmp_path, '[nodes.nodetool_jvm]\nclasspath = "/opt/cassandra/lib/*"\n')
    assert jvm == NodetoolJvm("/opt/cassandra/lib/*")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("[nodes.nodetool_jvm]\n", "nodes.nodetool_jvm.classpath", "required"),
        ('[nodes.nodetool_jvm]\nclasspath = ""\n', "nodes.nodetool_jvm.classpath", "at least 1"),
        (
            '[nodes.nodetool_jvm]\nclasspath = "x"\noptions = "-Xmx1G"\n',
            "nodes.nodetool_jvm.options",
            "list",
        ),
        (
            '[nodes.nodetool_jvm]\nclasspath = "x"\noptions = [""]\n',
            "nodes.nodetool_jvm.options.0",
            "at least 1",
        ),
        (
            '[nodes.nodetool_jvm]\nclasspath = "x"\njvm = "java"\n',
            "nodes.nodetool_jvm.jvm",
            "allowed here: classpath, java, options",
        ),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, text: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    (problem,) = caught.value.problems
    assert problem.field == field
    assert words in problem.message.lower() or words in problem.hint.lower()
