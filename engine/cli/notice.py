"""`rectify notice`: the notice of a decision as PDF (engine/report/notice.py).

    rectify notice DECISION_ID (--events EVENTS... | --store DB) --out notice.pdf [--lang zh] [--authority FILE]
    rectify notice --all (--events EVENTS... | --store DB) --out-dir DIR [--lang zh] [--authority FILE]

From events, the decisions are those of a replay with the engine options given; from a store,
those stored (with the registry the run saved). Exit codes as in engine/cli/common.py: 1 no such
decision, 2 usage, 3 configuration (an invalid authority file, no CJK font).
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from engine.cli.common import (EXIT_CONFIG, EXIT_INVALID, build_engine, engine_options, event_sources, font_error,
                               input_files, lang_option, time_option)
from engine.output import Store, is_store
from engine.report import ReportData, collect, from_records, rule_infos
from engine.report.fonts import FontMissing
from engine.report.notice import AuthorityError, UnknownDecision, load_authority, notice_pdf


def _from_store(path: str, engine_rules: object) -> ReportData:
    if not is_store(path):
        raise click.BadParameter(f"{path} is not a rectify SQLite store", param_hint="--store")
    with Store(path) as db:
        records = [orjson.loads(line) for line in db.lines()]
        registry = db.registry()
        summary = db.meta("summary") or {}
    infos = rule_infos(engine_rules)[0]  # type: ignore[arg-type]
    return from_records(records, registry, ruleset=str(summary.get("ruleset") or ""), rules=infos)


@click.command()
@click.argument("decision_id", metavar="DECISION_ID", required=False)
@click.option("--events", "events", multiple=True, type=click.Path(exists=True, allow_dash=True),
              help="The event log (repeatable, in order; JSONL or archives): the decisions of its replay.")
@click.option("--store", "store", type=click.Path(exists=True, dir_okay=False), help="A SQLite store of a run.")
@click.option("--out", "out", type=click.Path(dir_okay=False), help="The PDF of DECISION_ID.")
@click.option("--all", "every", is_flag=True, help="A PDF for every decision, into --out-dir.")
@click.option("--out-dir", "out_dir", type=click.Path(file_okay=False), help="Where --all writes DECISION_ID.pdf files.")
@click.option("--authority", "authority", type=click.Path(exists=True, dir_okay=False),
              help="The issuing authority (YAML, schemas/authority.schema.json); default: the example, marked SPECIMEN.")
@time_option("--as-of", "Reference event time (RFC 3339) of the replay: orders due before it escalate.")
@lang_option
@engine_options
def notice(decision_id: str | None, events: tuple[str, ...], store: str | None, out: str | None, every: bool,
           out_dir: str | None, authority: str | None, as_of: str | None, lang: str, disable: tuple[str, ...],
           options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Write the notice of a decision (DECISION_ID, or --all) as PDF: enterprise, findings with
    measured and judged values, limits and standards, legal basis, route, deadline, authority and
    document number."""
    if bool(events) == bool(store):
        raise click.UsageError("give --events EVENTS... or --store DB (one of them)")
    if every:
        if decision_id is not None or out is not None or out_dir is None:
            raise click.UsageError("--all takes --out-dir DIR (and no DECISION_ID or --out)")
    elif decision_id is None or out is None or out_dir is not None:
        raise click.UsageError("give DECISION_ID and --out FILE, or --all --out-dir DIR")
    try:
        issuer = load_authority(authority)
    except AuthorityError as exc:
        click.echo(f"rectify: configuration error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    if issuer.get("specimen"):
        click.echo("rectify: no --authority: the example authority, every page marked SPECIMEN", err=True)
    event_sources(events)  # an archive this rectify cannot read: its message, exit 2
    engine = build_engine(disable, options, params, strict, backend)
    if store is not None:
        data = _from_store(store, engine)
    else:
        with input_files(events) as paths:
            data = collect(engine, paths, as_of)
    wanted = [str(d["id"]) for d in data.decisions] if every else [str(decision_id)]
    targets = [Path(out_dir) / f"{i}.pdf" for i in wanted] if every else [Path(str(out))]
    if every:
        Path(str(out_dir)).mkdir(parents=True, exist_ok=True)
    try:
        for number, (identifier, target) in enumerate(zip(wanted, targets), start=1):
            target.write_bytes(notice_pdf(data, identifier, issuer, lang))
            if every and number % 50 == 0:
                click.echo(f"{number} of {len(wanted)} notices", err=True)
    except UnknownDecision as exc:
        click.echo(f"rectify: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    except FontMissing as exc:
        font_error(exc)
    click.echo(f"{len(wanted)} notice(s) written" + (f" to {out_dir}" if every else f": {out}"), err=True)
