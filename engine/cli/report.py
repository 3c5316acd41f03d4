"""`rectify report` (the programme summary, the HTML page) and `rectify evaluate` (the mu-average ranking)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
import orjson

from engine.cli.common import build_engine, engine_options, time_option
from engine.decide import ranking_json, ranking_text
from engine.ingest import JsonlFiles
from engine.records import Decision, Finding
from engine.report import programme_report, render_html, report_text


@click.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON object.")
@time_option("--as-of", "Reference event time (RFC 3339): orders due before it escalate.")
@click.option("--html", "html", type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML page for officials (no network: inline CSS and SVG).")
@click.option("--method", "method", type=click.Path(exists=True, dir_okay=False),
              help="Mu-average evaluation method (YAML; default: the built-in one).")
@engine_options
def report(events: tuple[str, ...], as_json: bool, as_of: str | None, html: str | None, method: str | None,
           disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Programme summary of EVENTS: lists and routes by industry and district, land freed, progress."""
    engine = build_engine(disable, options, params, strict, backend, method)
    decisions = []
    findings: Counter[str] = Counter()
    for record in engine.run_batch(JsonlFiles(events), as_of=as_of):
        if isinstance(record, Decision):
            decisions.append(record.to_dict())
        elif isinstance(record, Finding):
            findings[record.enterprise] += 1
    summary = programme_report(decisions, engine.registry, engine.targets())
    if html:
        Path(html).write_text(render_html(summary, decisions, engine.registry, findings, ruleset=engine.ruleset),
                              encoding="utf-8")
        click.echo(f"report written to {html}", err=True)
    if as_json:
        click.echo(orjson.dumps({"ruleset": engine.ruleset, **summary}, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(report_text(summary))


@click.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--year", required=True, type=click.IntRange(1990, 2100), help="The evaluation year.")
@click.option("--method", "method", type=click.Path(exists=True, dir_okay=False),
              help="Mu-average evaluation method (YAML; default: the built-in one).")
@click.option("--json", "as_json", is_flag=True, help="The ranking as one JSON object.")
@engine_options
def evaluate(events: tuple[str, ...], year: int, method: str | None, as_json: bool, disable: tuple[str, ...],
             options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Mu-average ranking of YEAR from EVENTS: enterprise, indicators, score, class.

    The ranking made at the year's `evaluation.closed`; without one in EVENTS, the ranking the
    records for YEAR give at the end of input (provisional).
    """
    engine = build_engine(disable, options, params, strict, backend, method)
    engine.evaluation.keep.add(year)
    for _ in engine.run_batch(JsonlFiles(events)):
        pass
    closed = year in engine.evaluation.rankings
    rows = engine.evaluation.rankings[year] if closed else engine.evaluation.rank(year)
    if as_json:
        document = {"ruleset": engine.ruleset, **ranking_json(engine.method, year, rows, closed)}
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(ranking_text(engine.method, year, rows, closed))
