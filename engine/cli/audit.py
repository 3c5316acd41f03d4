"""The audit commands: `rectify verify`, `replay`, `decisions`, `explain`, `diff`.

Exit codes as in engine/cli/common.py (0 ok, 1 a broken chain / a divergence / not found,
2 usage, 3 configuration). Text for people is in the language of `--lang` (the locale's by
default: engine/i18n); `--json` output and exit codes are the same in every language.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import orjson

from engine.audit import ManifestError, NotFound, SpecError, compare, diff_text, explain_text, first_divergence, \
    pinned_engine, read_manifest, replay_kept, replay_records
from engine.audit import explain as run_explain
from engine.cli.common import EXIT_CONFIG, EXIT_INVALID, build_engine, cores, engine_options, event_sources, \
    fork_is_safe, lang_option, one_source, store_errors, time_option
from engine.i18n import Translator, translator
from engine.ingest import JsonlFiles
from engine.ingest.archive import Archive
from engine.judge import RulePackError
from engine.output import DamagedStore, Store, Verdict, binary_problem, is_store, log_lines, unchained, verify_file, verify_lines
from engine.output.store import SQLITE_MAGIC
from engine.pipeline import Engine
from engine.plugins import PluginConflict
from engine.report.text import record_line
from engine.validate import load_core_schema


def _open_store(path: str, must_exist: bool = True) -> Store:
    if must_exist and not is_store(path):
        raise click.BadParameter(f"{path} is not a rectify SQLite store", param_hint="--store")
    return Store(path)


# ---- rectify verify ----------------------------------------------------------------------------


def _print_verdict(verdict: Verdict, name: str, as_json: bool, tr: Translator) -> None:
    if as_json:
        click.echo(orjson.dumps({"log": name, **verdict.to_dict()}).decode())
        return
    _ = tr.gettext
    for problem in verdict.problems:
        click.echo(_("{log}:{line}: {kind}: {message}").format(log=name, line=problem.line,
                                                                kind=tr.label("chain", problem.kind), message=tr.text(problem.text)))
    if verdict.ok:
        state = _("{log}: {records} records, chain intact, head {head}")
    else:
        state = _("{log}: {records} records, CHAIN BROKEN ({count} problem(s)), head {head}")
    click.echo(state.format(log=name, records=verdict.records, count=len(verdict.problems), head=verdict.head), err=True)


@click.command()
@click.argument("log", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--store", "store", type=click.Path(exists=True, dir_okay=False), help="Verify a SQLite store's records.")
@click.option("--head", "head", metavar="HASH", help="The published head hash: detects records cut off the end.")
@click.option("--json", "as_json", is_flag=True, help="The verdict as one JSON object.")
@lang_option
def verify(log: str | None, store: str | None, head: str | None, as_json: bool, lang: str) -> None:
    """Check the hash chain of a decision LOG (JSONL, or a store); name every edited, removed,
    inserted or reordered record. Exit 1 if the chain is broken."""
    tr = translator(lang)
    _ = tr.gettext
    if (log is None) == (store is None):
        raise click.UsageError(_("give LOG or --store DB (one of them)"))
    path = log or store
    assert path is not None
    if store is not None and not is_store(store):
        with open(store, "rb") as handle:
            start = handle.read(16)
        click.echo(_("{store}: not a SQLite store: it starts with {start}, not {magic} (overwritten or not a store); "
                     "STORE DAMAGED").format(store=store, start=repr(start), magic=repr(SQLITE_MAGIC)), err=True)
        raise SystemExit(EXIT_INVALID)
    if not is_store(path) and (problem := binary_problem(path)) is not None:
        click.echo(_("{log}: {problem}; LOG DAMAGED").format(log=path, problem=problem), err=True)
        raise SystemExit(EXIT_INVALID)
    if is_store(path):
        try:
            opened = Store(path)
        except DamagedStore as exc:
            click.echo(_("{store}: STORE DAMAGED: SQLite cannot open it ({reason})").format(
                store=path, reason=exc.reason or exc), err=True)
            raise SystemExit(EXIT_INVALID) from None
        with store_errors(path), opened as db:
            problems = db.integrity()  # SQLite's check of every page first: the chain is read from those pages
            if problems:
                for problem in problems[:20]:
                    click.echo(_("{store}: integrity check: {problem}").format(store=path, problem=problem))
                click.echo(_("{store}: STORE DAMAGED ({count} problem(s) in SQLite's integrity check)").format(
                    store=path, count=len(problems)), err=True)
                raise SystemExit(EXIT_INVALID)
            verdict = verify_lines(db.lines(), head)
            stored_head = db.meta("head")
            if head is None and stored_head is not None and stored_head != verdict.head:
                verdict = verify_lines(db.lines(), stored_head)
    else:
        verdict = verify_file(path, head)
    _print_verdict(verdict, path, as_json, tr)
    if not verdict.ok:
        raise SystemExit(EXIT_INVALID)


# ---- rectify replay ----------------------------------------------------------------------------


@click.command()
@click.argument("events", nargs=-1, required=False, type=click.Path(exists=True))
@click.option("--verify", "log", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The decision log to compare with (JSONL, or a SQLite store). Without EVENTS: the store of "
                   "`rectify serve`, replayed from the events it kept.")
@time_option("--as-of", "The --as-of the log was made with (default: the log's manifest says).")
@click.option("--quarantine-separate", is_flag=True, help="The log was written with --quarantine FILE (no quarantine records).")
@click.option("--ignore-manifest", is_flag=True,
              help="Build the engine from the installed plugins and the options given, not from the log's manifest.")
@click.option("--json", "as_json", is_flag=True, help="The result as one JSON object.")
@lang_option
@engine_options
@click.pass_context
def replay(ctx: click.Context, events: tuple[str, ...], log: str, as_of: str | None, quarantine_separate: bool,
           ignore_manifest: bool, as_json: bool, lang: str, disable: tuple[str, ...], options: tuple[str, ...],
           params: str | None, strict: bool, backend: str) -> None:
    """Re-run EVENTS (JSONL files, or archives made by `rectify archive`) and compare with a decision
    log: the first divergence (line, field), or none. Without EVENTS, the log is a `rectify serve`
    store: its kept events are replayed in arrival order.

    By default the engine is the one the log's manifest describes (LOG.manifest.json, or the
    store's): the same plugins at the same versions (others installed are ignored, with a
    note), options, parameters and backend. Also checks the log's hash chain. Exit 1 on a
    divergence or a broken chain, 3 when the manifest cannot be honoured."""
    tr = translator(lang)
    _ = tr.gettext
    event_sources(events)  # an archive this rectify cannot read: its message, exit 2
    with store_errors(log):
        if not events and not (is_store(log) and _kept_events(log)):
            raise click.UsageError(_("give EVENTS, or --verify the store of `rectify serve` (which keeps its events)"))
        try:
            found = None if ignore_manifest else read_manifest(log)
        except ManifestError as exc:
            click.echo(_("rectify: configuration error: {error}").format(error=tr.text(exc.text)), err=True)
            raise SystemExit(EXIT_CONFIG) from None
    if found is None:
        engine = build_engine(disable, options, params, strict, backend)
    else:
        given = [f"--{name.replace('_', '-')}" for name in ("disable", "options", "params", "strict", "backend",
                                                                 "clock_lead_days", "clock_quorum")
                 if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if given:
            raise click.UsageError(_("the log's manifest names its rule set; {options} would change it "
                                     "(add --ignore-manifest to use them instead)").format(options=", ".join(given)))
        try:
            engine, notes = pinned_engine(found)
        except (ManifestError, RulePackError, PluginConflict) as exc:
            error = tr.text(exc.text) if isinstance(exc, ManifestError) else str(exc)
            click.echo(_("rectify: configuration error: {error}").format(error=error), err=True)
            raise SystemExit(EXIT_CONFIG) from None
        for note in notes:
            click.echo(_("rectify: {note}").format(note=tr.text(note)), err=True)
        if as_of is None:
            as_of = found["as_of"]
        quarantine_separate = quarantine_separate or found["quarantine_separate"]
    with store_errors(log):
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
            click.echo(_("{log}:{line}: chain {kind}: {message}").format(
                log=log, line=problem.line, kind=tr.label("chain", problem.kind), message=tr.text(problem.text)))
        if divergence is None:
            click.echo(_("replay matches {log}: {records} records, head {head}").format(
                log=log, records=len(mine), head=mine[-1]["hash"] if mine else "-"))
        else:
            where = _("line {line} (id {id})") if divergence.id else _("line {line}")
            if divergence.field is None:
                what = _("the replay has no record here") if divergence.replayed is None else \
                    _("the log ends here") if divergence.expected is None else _("the logged line is not a JSON object")
            else:
                what = _("field {field}: logged {logged}, replayed {replayed}").format(
                    field=repr(divergence.field), logged=orjson.dumps(divergence.expected, default=str).decode(),
                    replayed=orjson.dumps(divergence.replayed, default=str).decode())
            click.echo(_("first divergence at {where}: {what}").format(
                where=where.format(line=divergence.line, id=divergence.id), what=what))
            if divergence.field == "ruleset":
                click.echo(_("the rule set differs: replay with the options, --params and plugins the log was made with"))
    if divergence is not None or not verdict.ok:
        raise SystemExit(EXIT_INVALID)


def _kept_events(path: str) -> int:
    with Store(path) as db:
        return db.last_event()


# ---- rectify decisions --------------------------------------------------------------------------


def _decision_values(field: str) -> list[str]:
    """The values a decision's `list` or `action` can take (schemas/decision.schema.json), so a
    misspelt filter is refused instead of answering "0 record(s)"."""
    return [v for v in load_core_schema("decision.schema.json")["properties"][field]["enum"] if v is not None]



@click.command()
@click.option("--store", "store", required=True, type=click.Path(exists=True, dir_okay=False), help="The SQLite store.")
@click.option("--enterprise", metavar="CODE")
@click.option("--list", "list_", type=click.Choice(_decision_values("list")), help="The programme list.")
@click.option("--action", type=click.Choice(_decision_values("action")), help="The route (decision action).")
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
    _ = translator(lang).gettext
    with store_errors(store), _open_store(store) as db:
        if export is not None:
            if export == "-":
                count = db.export(sys.stdout.buffer)
            else:
                with open(export, "wb") as handle:
                    count = db.export(handle)
            click.echo(_("exported {count} records, head {head}").format(count=count, head=db.head()), err=True)
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
            click.echo(_("{count} record(s)").format(count=count), err=True)


# ---- rectify explain ----------------------------------------------------------------------------


@click.command()
@click.argument("record_id", metavar="ID")
@click.option("--events", "events", multiple=True, required=True, type=click.Path(exists=True),
              help="The event log (repeatable, in order) the record was made from, or one archive (`rectify archive`).")
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
    that satisfied it, corrections, evidence events, basis, an amount's computation; or why a
    data gap (ID) could not be judged: the inputs missing and what would let it be judged.
    Exit 1 if ID is not found (or is an input event's)."""
    _ = translator(lang).gettext
    lines = _one_source(events)
    engine = build_engine(disable, options, params, strict, backend)
    try:
        report = run_explain(engine, lines, record_id, as_of)
    except NotFound as exc:
        click.echo(_("rectify: {note}").format(note=translator(lang).text(exc.text)), err=True)
        raise SystemExit(EXIT_INVALID) from None
    source = log or store
    if source is not None:
        logged = None
        if is_store(source):
            with store_errors(source), Store(source) as db:
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
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--rules", "specs", multiple=True, required=True, metavar="SPEC",
              help="A configuration: default | option:NAME | params:FILE | disable:PLUGIN, comma-separated. Give it twice.")
@time_option("--as-of")
@click.option("--json", "as_json", is_flag=True, help="The comparison as one JSON object.")
@click.option("--backend", type=click.Choice(["compiled", "rete"]), default="compiled", show_default=True)
def diff(events: tuple[str, ...], specs: tuple[str, ...], as_of: str | None, as_json: bool, backend: str) -> None:
    """What-if: which enterprises' findings and decisions change between two rule-set
    configurations (--rules A --rules B), with counts per list and action. EVENTS: JSONL files,
    or one archive from `rectify archive` (replayed by column, the same result, faster)."""
    if len(specs) != 2:
        raise click.UsageError("give --rules twice: --rules A --rules B")
    source = _one_source(events)

    def build(config: Any) -> Any:
        try:
            return Engine(disable=config.disable, options=config.options, parameters=config.parameters, backend=backend)
        except (RulePackError, PluginConflict) as exc:
            click.echo(f"rectify: configuration error in {config.spec!r}: {exc}", err=True)
            raise SystemExit(EXIT_CONFIG) from None

    try:
        # the two replays are independent: B's runs in a forked process beside A's where that helps and is safe
        result = compare(build, specs[0], specs[1], source, as_of, concurrent=cores() >= 2 and fork_is_safe())
    except SpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--rules") from None
    click.echo(orjson.dumps(result).decode() if as_json else diff_text(result))


def _one_source(events: tuple[str, ...]) -> Callable[[], JsonlFiles | Archive]:
    """EVENTS read more than once (a command that runs the log, then looks into it): JSONL files,
    or one archive; a fresh reader at each call."""
    source = one_source(events)
    if isinstance(source, Archive):
        return lambda: Archive(source.directory)
    return lambda: JsonlFiles(source.paths)
