"""The `rectify` command line. Commands only wire options to the stages; one module per group:

    run.py     run (in-process, --store, --cluster dask; JSONL files or archives), validate
    archive.py archive (JSONL validated once into a Parquet archive)
    ingest.py  ingest hj212 (files, stdin, or a TCP listener)
    audit.py   verify, replay, decisions, explain, diff
    report.py  report, evaluate
    notice.py  notice (rectification notices as PDF)
    info.py    rules, plugins
    demo.py    demo
    serve.py   serve (the live service: HTTP and HJ 212 in, decisions at once)
    common.py  exit codes, engine options, output files, the run summary; logs.py structlog set-up
"""

from __future__ import annotations

import errno
import importlib
import sys
import traceback
from typing import Any

import click

from engine.cli.logs import configure

# command name -> "module:attribute"; a command's module is imported only when it runs
COMMANDS = {
    "run": "engine.cli.run:run",
    "archive": "engine.cli.archive:archive",
    "validate": "engine.cli.run:validate",
    "rules": "engine.cli.info:rules",
    "plugins": "engine.cli.info:plugins",
    "report": "engine.cli.report:report",
    "evaluate": "engine.cli.report:evaluate",
    "demo": "engine.cli.demo:demo",
    "ingest": "engine.cli.ingest:ingest_group",
    "verify": "engine.cli.audit:verify",
    "replay": "engine.cli.audit:replay",
    "decisions": "engine.cli.audit:decisions",
    "explain": "engine.cli.audit:explain",
    "diff": "engine.cli.audit:diff",
    "notice": "engine.cli.notice:notice",
    "serve": "engine.cli.serve:serve",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (the pattern in click's documentation)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command: Any = getattr(importlib.import_module(module), attribute)
        return command  # type: ignore[no-any-return]

    def invoke(self, ctx: click.Context) -> Any:
        """A command; an archive found damaged while it is read (a part file unreadable, rows
        missing), a helper process that ended before its work was handed over (killed, or
        failed: its traceback is logged at debug level), or a file the command could not make,
        open or write (an output in a directory that cannot be made, no room left on the device:
        the file and the system's reason; the traceback at debug level) ends it with the
        message, exit 1, as a damaged store does."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from engine.cli.common import EXIT_INVALID
            from engine.cli.logs import get_logger

            if isinstance(exc, OSError) and (exc.filename is not None or exc.errno == errno.ENOSPC):
                get_logger().debug("file_traceback", traceback="".join(traceback.format_exception(exc)))
                place = f"{exc.filename}: " if exc.filename is not None else ""
                click.echo(f"rectify: {place}{exc.strerror or exc}", err=True)
                ctx.exit(EXIT_INVALID)
            archive = sys.modules.get("engine.ingest.archive")  # imported by whatever read an archive
            workers = sys.modules.get("engine.fast.workers")  # imported by whatever forks helpers
            if not (archive is not None and isinstance(exc, archive.ArchiveError)
                    or workers is not None and isinstance(exc, workers.HelperFailed)):
                raise
            if getattr(exc, "detail", ""):
                get_logger().debug("helper_traceback", traceback=exc.detail)
            click.echo(f"rectify: {exc}", err=True)
            ctx.exit(EXIT_INVALID)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]), show_default=True)
@click.version_option(package_name="ningbo-rectify", prog_name="rectify")
def cli(log_level: str) -> None:
    """rectify: findings from enterprise event logs, by industry rule packs."""
    configure(log_level)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="rectify", standalone_mode=True)
    except BrokenPipeError:  # `rectify run ... | head` is fine
        sys.exit(0)
