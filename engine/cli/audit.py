"""The audit commands: `rectify verify`, `replay`, `decisions`, `explain`, `diff`.

Exit codes as in engine/cli/common.py (0 ok, 1 a broken chain / a divergence / not found,
2 usage, 3 configuration).
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from engine.audit import NotFound, SpecError, compare, diff_text, explain_text, first_divergence, replay_kept, \
    replay_records
from engine.audit import explain as run_explain
from engine.cli.common import EXIT_CONFIG, EXIT_INVALID, build_engine, engine_options, lang_option, time_option
from engine.ingest import JsonlFiles
from engine.judge import RulePackError
from engine.output import Store, Verdict, is_store, log_lines, unchained, verify_file, verify_lines
from engine.pipeline import Engine
from engine.plugins import PluginConflict
from engine.report.text import record_line


def _open_store(path: str, must_exist: bool = True) -> Store:
    if must_exist and not is_store(path):
        raise click.BadParameter(f"{path} is not a rectify SQLite store", param_hint="--store")
    return Store(path)


# ---- rectify verify ----------------------------------------------------------------------------


def _print_verdict(verdict: Verdict, name: str, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps({"log": name, **verdict.to_dict()}).decode())
        return
    for problem in verdict.problems:
        click.echo(f"{name}:{problem.line}: {problem.kind}: {problem.message}")
    state = "chain intact" if verdict.ok else f"CHAIN BROKEN ({len(verdict.problems)} problem(s))"
    click.echo(f"{name}: {verdict.records} records, {state}, head {verdict.head}", err=True)


@click.command()
@click.argument("log", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--store", "store", type=click.Path(exists=True, dir_okay=False), help="Verify a SQLite store's records.")
@click.option("--head", "head", metavar="HASH", help="The published head hash: detects records cut off the end.")
@click.option("--json", "as_json", is_flag=True, help="The verdict as one JSON object.")
def verify(log: str | None, store: str | None, head: str | None, as_json: bool) -> None:
    """Check the hash chain of a decision LOG (JSONL, or a store); name every edited, removed,
    inserted or reordered record. Exit 1 if the chain is broken."""
    if (log is None) == (store is None):
        raise click.UsageError("give LOG or --store DB (one of them)")
    path = log or store
    assert path is not None
    if is_store(path):
        with Store(path) as db:
            verdict = verify_lines(db.lines(), head)
            stored_head = db.meta("head")
            if head is None and stored_head is not None and stored_head != verdict.head:
                verdict = verify_lines(db.lines(), stored_head)
    else:
        verdict = verify_file(path, head)
    _print_verdict(verdict, path, as_json)
    if not verdict.ok:
        raise SystemExit(EXIT_INVALID)


# ---- rectify replay ----------------------------------------------------------------------------


@click.command()
@click.argument("events", nargs=-1, required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--verify", "log", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The decision log to compare with (JSONL, or a SQLite store). Without EVENTS: the store of "
                   "`rectify serve`, replayed from the events it kept.")
@time_option("--as-of", "The --as-of the log was made with.")
@click.option("--quarantine-separate", is_flag=True, help="The log was written with --quarantine FILE (no quarantine records).")
@click.option("--json", "as_json", is_flag=True, help="The result as one JSON object.")
@engine_options
def replay(events: tuple[str, ...], log: str, as_of: str | None, quarantine_separate: bool, as_json: bool,
           disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Re-run EVENTS and compare with a decision log: the first divergence (line, field), or none.
    Without EVENTS, the log is a `rectify serve` store: its kept events are replayed in arrival order.

    Also checks the log's hash chain. Exit 1 on a divergence or a broken chain."""
    if not events and not (is_store(log) and _kept_events(log)):
        raise click.UsageError("give EVENTS, or --verify the store of `rectify serve` (which keeps its events)")
    engine = build_engine(disable, options, params, strict, backend)
    lines = log_lines(log)
    verdict = verify_lines(lines)
    if events:
        mine = replay_records(engine, events, as_of, quarantine=not quarantine_separate)
    else:
        with Store(log) as db:
            mine = replay_kept(engine, db)
    divergence = first_divergence(lines, mine)
    if as_json:
        click.echo(orjson.dumps({"log": log, "records": len(lines), "replayed": len(mine), "ruleset": engine.ruleset,
                                 "divergence": divergence.to_dict() if divergence else None,
                                 "chain": verdict.to_dict()}, default=str).decode())
    else:
        for problem in verdict.problems:
            click.echo(f"{log}:{problem.line}: chain {problem.kind}: {problem.message}")
        if divergence is None:
            click.echo(f"replay matches {log}: {len(mine)} records, head {mine[-1]['hash'] if mine else '-'}")
        else:
            where = f"line {divergence.line}" + (f" (id {divergence.id})" if divergence.id else "")
            if divergence.field is None:
                what = "the replay has no record here" if divergence.replayed is None else \
                    "the log ends here" if divergence.expected is None else "the logged line is not a JSON object"
            else:
                what = (f"field {divergence.field!r}: logged {orjson.dumps(divergence.expected, default=str).decode()}, "
                        f"replayed {orjson.dumps(divergence.replayed, default=str).decode()}")
            click.echo(f"first divergence at {where}: {what}")
            if divergence.field == "ruleset":
                click.echo("the rule set differs: replay with the options, --params and plugins the log was made with")
    if divergence is not None or not verdict.ok:
        raise SystemExit(EXIT_INVALID)


def _kept_events(path: str) -> int:
    with Store(path) as db:
        return db.last_event()


# ---- rectify decisions --------------------------------------------------------------------------


@click.command()
@click.option("--store", "store", required=True, type=click.Path(exists=True, dir_okay=False), help="The SQLite store.")
@click.option("--enterprise", metavar="CODE")
@click.option("--list", "list_", metavar="LIST", help="backward_capacity, high_consumption_low_efficiency, scattered_polluted")
@click.option("--action", metavar="ACTION")
@click.option("--rule", metavar="RULE", help="Rule id (findings) or decision rule id (decisions).")
@time_option("--since", "Event time from (RFC 3339).")
@time_option("--until", "Event time until (RFC 3339).")
@click.option("--kind", type=click.Choice(["finding", "decision", "quarantine"]), help="Only this record type.")
@click.option("--json", "as_json", is_flag=True, help="Records as JSON lines (as stored, with prev/hash).")
@click.option("--export", "export", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write every record as a chained JSONL log ('-' = stdout), ignoring filters.")
@lang_option
def decisions(store: str, enterprise: str | None, list_: str | None, action: str | None, rule: str | None,
              since: str | None, until: str | None, kind: str | None, as_json: bool, export: str | None, lang: str) -> None:
    """Query the findings and decisions in a store by enterprise, list, action, rule and event time."""
    with _open_store(store) as db:
        if export is not None:
            if export == "-":
                count = db.export(sys.stdout.buffer)
            else:
                with open(export, "wb") as handle:
                    count = db.export(handle)
            click.echo(f"exported {count} records, head {db.head()}", err=True)
            return
        count = 0
        registry = {} if as_json else db.registry()
        for record in db.query(enterprise=enterprise, list=list_, action=action, rule=rule, since=since, until=until,
                               record=kind):
            count += 1
            if as_json:
                click.echo(orjson.dumps(record).decode())
                continue
            click.echo(record_line(record, registry, lang))
        if not as_json:
            click.echo(f"{count} record(s)", err=True)


# ---- rectify explain ----------------------------------------------------------------------------


@click.command()
@click.argument("record_id", metavar="ID")
@click.option("--events", "events", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="The event log (repeatable, in order) the record was made from.")
@click.option("--log", "log", type=click.Path(exists=True, dir_okay=False),
              help="The decision log (JSONL or store): the logged record is compared with the replay.")
@click.option("--store", "store", type=click.Path(exists=True, dir_okay=False), help="Same as --log, for a store.")
@time_option("--as-of")
@click.option("--json", "as_json", is_flag=True, help="The explanation as one JSON object.")
@lang_option
@engine_options
def explain(record_id: str, events: tuple[str, ...], log: str | None, store: str | None, as_of: str | None, as_json: bool,
            lang: str, disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Why a finding or decision (ID) was made: rule and version, the condition and the values
    that satisfied it, corrections, evidence events, basis. Exit 1 if ID is not found."""
    engine = build_engine(disable, options, params, strict, backend)
    try:
        report = run_explain(engine, lambda: JsonlFiles(events), record_id, as_of)
    except NotFound as exc:
        click.echo(f"rectify: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    source = log or store
    if source is not None:
        logged = None
        if is_store(source):
            with Store(source) as db:
                logged = db.find(record_id)
        else:
            for line in log_lines(source):
                if f'"id":"{record_id}"'.encode() in line:
                    logged = orjson.loads(line)
                    break
        if logged is None:
            report["logged"] = {"found": False, "matches": False, "fields": ["(not in the log)"]}
        else:
            mine = report["replayed"]
            fields = [k for k in {**unchained(logged), **mine} if unchained(logged).get(k) != mine.get(k)]
            report["logged"] = {"found": True, "matches": not fields, "fields": fields, "hash": logged.get("hash")}
    if as_json:
        click.echo(orjson.dumps(report, default=str).decode())
    else:
        click.echo(explain_text(report, lang, name=str(engine.registry.get(report["enterprise"], {}).get("name") or "")))


# ---- rectify diff (what-if) ---------------------------------------------------------------------


@click.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--rules", "specs", multiple=True, required=True, metavar="SPEC",
              help="A configuration: default | option:NAME | params:FILE | disable:PLUGIN, comma-separated. Give it twice.")
@time_option("--as-of")
@click.option("--json", "as_json", is_flag=True, help="The comparison as one JSON object.")
@click.option("--backend", type=click.Choice(["compiled", "rete"]), default="compiled", show_default=True)
def diff(events: tuple[str, ...], specs: tuple[str, ...], as_of: str | None, as_json: bool, backend: str) -> None:
    """What-if: which enterprises' findings and decisions change between two rule-set
    configurations (--rules A --rules B), with counts per list and action."""
    if len(specs) != 2:
        raise click.UsageError("give --rules twice: --rules A --rules B")

    def build(config: Any) -> Any:
        try:
            return Engine(disable=config.disable, options=config.options, parameters=config.parameters, backend=backend)
        except (RulePackError, PluginConflict) as exc:
            click.echo(f"rectify: configuration error in {config.spec!r}: {exc}", err=True)
            raise SystemExit(EXIT_CONFIG) from None

    try:
        result = compare(build, specs[0], specs[1], lambda: JsonlFiles(events), as_of)
    except SpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--rules") from None
    click.echo(orjson.dumps(result).decode() if as_json else diff_text(result))
