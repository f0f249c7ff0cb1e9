"""What a scheduler must not take from a file that loads: one with no jobs, or an edit that
loses every job or the [server] table.

An emptied or truncated file is valid TOML, and every table in it has defaults, so it loads:
with no jobs, and the server address back at its default. Run as it is, it silently stops
every backup. So a file that names no jobs is only accepted when it says so (`jobs = {}`),
and a reload that drops them all, or drops [server], is refused like a bad file.
"""

from __future__ import annotations

from cassy_scheduler.config.model import SchedulerConfig
from cassy_scheduler.configfile.errors import ConfigProblem

_NO_JOBS_HINT = (
    "add [jobs.NAME] tables (examples/scheduler.toml); if the file really is to back up "
    "nothing, say so with jobs = {}"
)


def says_no_jobs(config: SchedulerConfig) -> bool:
    """The file has no jobs and says so itself (`jobs = {}` or an empty [jobs] table)."""
    return not config.jobs and "jobs" in config.declared


def missing_jobs(config: SchedulerConfig) -> ConfigProblem | None:
    """A file with no jobs that does not say so: emptied, cut short, or the wrong file."""
    if config.jobs or says_no_jobs(config):
        return None
    return ConfigProblem(
        str(config.path),
        None,
        "jobs",
        "the file defines no jobs, so nothing would be backed up",
        _NO_JOBS_HINT,
    )


def reload_refusals(old: SchedulerConfig, new: SchedulerConfig) -> list[ConfigProblem]:
    """Why `new` must not replace the running `old`, though it loads; empty when it may."""
    problems = []
    if old.jobs and not new.jobs and not says_no_jobs(new):
        problems.append(
            ConfigProblem(
                str(new.path),
                None,
                "jobs",
                f"the file now defines no jobs (the running config has {len(old.jobs)}): "
                "emptied or cut short?",
                _NO_JOBS_HINT,
            )
        )
    if "server" in old.declared and "server" not in new.declared:
        problems.append(
            ConfigProblem(
                str(new.path),
                None,
                "server",
                f"the [server] table is gone, so the address would fall back to the default "
                f"instead of {old.server.address}",
                "write the [server] table back; to use the default address, write it: "
                f'[server] address = "{new.server.address}"',
            )
        )
    return problems
