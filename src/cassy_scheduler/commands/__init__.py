"""The CLI's verbs, one module per group; cli.py adds them to the app with `add_commands`."""

from __future__ import annotations

import typer

from cassy_scheduler.commands import backup, cassy, check, history, jobs, node, prune, run


def add_commands(app: typer.Typer) -> None:
    app.command(name="run")(run.run)
    app.command(name="backup", help=backup.HELP)(backup.backup)
    app.command(name="jobs")(jobs.jobs)
    app.command(name="history")(history.history)
    app.command(name="check")(check.check)
    app.command(name="schedule")(jobs.schedule)
    app.command(name="crontab")(jobs.crontab)
    app.command(name="register")(cassy.register)
    app.command(name="clusters")(cassy.clusters)
    app.command(name="backups")(cassy.backups)
    app.command(name="prune")(prune.prune)
    app.command(name="node", help=node.HELP)(node.node)
