"""The `rectify` command line. Commands only wire options to the stages; one module per group:

    run.py     run (in-process, --store, --cluster dask), validate
    ingest.py  ingest hj212 (files, stdin, or a TCP listener)
    audit.py   verify, replay, decisions, explain, diff
    report.py  report, evaluate
    info.py    rules, plugins
    demo.py    demo
    common.py  exit codes, engine options, output files, the run summary; logs.py structlog set-up
"""

from __future__ import annotations

import sys

import click

from engine.cli import audit, demo, info, ingest, report, run
from engine.cli.logs import configure


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]), show_default=True)
@click.version_option(package_name="ningbo-rectify", prog_name="rectify")
def cli(log_level: str) -> None:
    """rectify: findings from enterprise event logs, by industry rule packs."""
    configure(log_level)


for command in (run.run, run.validate, info.rules, info.plugins, report.report, report.evaluate, demo.demo,
                ingest.ingest_group, audit.verify, audit.replay, audit.decisions, audit.explain, audit.diff):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="rectify", standalone_mode=True)
    except BrokenPipeError:  # `rectify run ... | head` is fine
        sys.exit(0)
