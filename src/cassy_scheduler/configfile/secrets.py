"""Secrets in config files come from an environment variable or a file; inline text is tolerated.

A field `password` may be written `password_env = "NAME"` or `password_file = "/path"`; a bare
`password = "..."` works but logs a warning, because config files get copied and committed.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Secret:
    """Where one secret comes from; `resolve` reads it when it is needed, not at load time."""

    key_path: str
    origin: str
    env: str | None = None
    file: Path | None = None
    inline: str | None = field(default=None, repr=False)

    @classmethod
    def from_table(
        cls, table: Mapping[str, object], name: str, *, where: str, origin: str, base_dir: Path
    ) -> Secret | None:
        """Read `name`, `name_env` or `name_file` from a table; None when none is given.

        `where` is the table's dotted path (for messages), `base_dir` anchors relative files.
        """
        path = f"{where}.{name}"
        given = {k: table[k] for k in (name, f"{name}_env", f"{name}_file") if k in table}
        if not given:
            return None
        if len(given) > 1:
            keys = " and ".join(given)
            raise _problem(origin, path, f"{keys} are both given", f"keep only one of {keys}")
        key, value = next(iter(given.items()))
        if not isinstance(value, str) or not value:
            raise _problem(
                origin, f"{where}.{key}", "must be a non-empty string", _HINT.format(n=name)
            )
        if key == f"{name}_env":
            return cls(path, origin, env=value)
        if key == f"{name}_file":
            file = Path(value).expanduser()
            return cls(path, origin, file=file if file.is_absolute() else base_dir / file)
        _log.warning(
            "secret given inline field=%s file=%s advice=%s",
            path,
            origin,
            f"use {name}_env or {name}_file",
        )
        return cls(path, origin, inline=value)

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        """The secret's text; a file's trailing newline is dropped."""
        if self.inline is not None:
            return self.inline
        if self.env is not None:
            value = (os.environ if environ is None else environ).get(self.env)
            if not value:
                raise _problem(
                    self.origin,
                    self.key_path,
                    f"environment variable {self.env} is not set or empty",
                    f"export {self.env} in the scheduler's environment (e.g. its systemd unit)",
                )
            return value
        assert self.file is not None
        try:
            text = self.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise _problem(
                self.origin,
                self.key_path,
                f"cannot read secret file {self.file}: {exc.strerror}",
                "check the path and that the scheduler's user may read it",
            ) from None
        if self.file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            _log.warning("secret file readable by others file=%s advice=%s", self.file, "chmod 600")
        return text.removesuffix("\n").removesuffix("\r")


_HINT = 'write e.g. {n}_env = "SMTP_PASSWORD" or {n}_file = "/etc/cassy-scheduler/{n}"'


def _problem(origin: str, path: str, message: str, hint: str) -> ConfigError:
    return ConfigError([ConfigProblem(origin, None, path, message, hint)])
