"""`rectify report` (the programme summary, the HTML page) and `rectify evaluate` (the mu-average ranking)."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from engine.cli.common import build_engine, engine_options, event_sources, font_error, input_files, lang_option, \
    one_source, time_option
from engine.decide import ranking_json
from engine.report import collect, render_html, report_text, summary_of
from engine.report.fonts import FontMissing
from engine.report.text import ranking_text


@click.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON object.")
@time_option("--as-of", "Reference event time (RFC 3339): orders due before it escalate.")
@click.option("--html", "html", type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML page for officials (no network: inline CSS, SVG, script and font).")
@click.option("--method", "method", type=click.Path(exists=True, dir_okay=False),
              help="Mu-average evaluation method (YAML; default: the built-in one).")
@lang_option
@engine_options
def report(events: tuple[str, ...], as_json: bool, as_of: str | None, html: str | None, method: str | None, lang: str,
           disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Programme summary of EVENTS (JSONL files, or archives made by `rectify archive`): lists and
    routes by industry and district, land freed, progress; with --html, the page: findings,
    decisions and every enterprise's file."""
    event_sources(events)  # an archive this rectify cannot read: its message, exit 2
    engine = build_engine(disable, options, params, strict, backend, method)
    with input_files(events) as paths:
        data = collect(engine, paths, as_of)
    summary = summary_of(data)
    if html:
        try:
            page = render_html(data, lang)
        except FontMissing as exc:
            font_error(exc)
        Path(html).write_text(page, encoding="utf-8")
        click.echo(f"report written to {html}", err=True)
    if as_json:
        click.echo(orjson.dumps({"ruleset": engine.ruleset, **summary}, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(report_text(summary, lang))


@click.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True, allow_dash=True))
@click.option("--year", required=True, type=click.IntRange(1990, 2100), help="The evaluation year.")
@click.option("--method", "method", type=click.Path(exists=True, dir_okay=False),
              help="Mu-average evaluation method (YAML; default: the built-in one).")
@click.option("--json", "as_json", is_flag=True, help="The ranking as one JSON object.")
@lang_option
@engine_options
def evaluate(events: tuple[str, ...], year: int, method: str | None, as_json: bool, lang: str, disable: tuple[str, ...],
             options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Mu-average ranking of YEAR from EVENTS (JSONL files, or one archive from `rectify archive`):
    enterprise, indicators, score, class.

    The ranking made at the year's `evaluation.closed`; without one in EVENTS, the ranking the
    records for YEAR give at the end of input (provisional).
    """
    source = one_source(events)
    engine = build_engine(disable, options, params, strict, backend, method)
    engine.evaluation.keep.add(year)
    for _ in engine.run_batch(source):
        pass
    closed = year in engine.evaluation.rankings
    rows = engine.evaluation.rankings[year] if closed else engine.evaluation.rank(year)
    if as_json:
        document = {"ruleset": engine.ruleset, **ranking_json(engine.method, year, rows, closed)}
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(ranking_text(ranking_json(engine.method, year, rows, closed), engine.method, engine.registry, lang))
