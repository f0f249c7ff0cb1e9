"""The README's commands, as an operator would type them, in the order they appear.

Shell blocks (```sh) give one command a line; crontab blocks give the command part of each
entry. Trailing `# comments` are dropped. Commands the README runs from a checkout (`make
...`) are run by other tests or by CI, named in COVERED_ELSEWHERE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: Commands whose whole run is another test's job, and that test.
COVERED_ELSEWHERE = {
    "make demo": "tests/integration/test_demo.py",
    "make demo-restore": "tests/integration/test_demo_restore.py",
    "make test": ".ci/run",
}

#: Words in commands that stand for values only known at run time.
PLACEHOLDERS = ("CLUSTER_ID", "SNAPSHOT_ID")

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_COMMENT = re.compile(r"\s+#\s.*$")


@dataclass(frozen=True)
class Command:
    text: str
    line: int  # in README.md, for messages

    @property
    def words(self) -> list[str]:
        return self.text.split()


def blocks(language: str, text: str | None = None) -> list[tuple[int, str]]:
    """(first line number, body) of every fenced block in that language."""
    source = README.read_text(encoding="utf-8") if text is None else text
    found = []
    for match in _FENCE.finditer(source):
        if match.group(1) == language:
            found.append((source.count("\n", 0, match.start(2)) + 1, match.group(2)))
    return found


def commands(text: str | None = None) -> list[Command]:
    """Every command of the sh and crontab blocks, in document order."""
    found: list[Command] = []
    for language in ("sh", "crontab"):
        for first, body in blocks(language, text):
            for offset, raw in enumerate(body.splitlines()):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if language == "crontab":
                    line = line.split(maxsplit=5)[5]
                found.append(Command(_COMMENT.sub("", line).strip(), first + offset))
    return sorted(found, key=lambda c: c.line)
