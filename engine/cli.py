"""The `rectify` command line.

Exit codes scripts can trust:
  0  the command ran (a run with quarantined lines still ran: see the summary)
  1  `rectify validate` found invalid lines, or an internal error
  2  usage error (bad option, missing file)
  3  configuration error (an invalid rule pack, a plugin conflict, an unknown option)
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import click
import orjson
import yaml
from tqdm import tqdm

from engine.logs import configure, get_logger
from engine.pipeline import Engine
from engine.plugins import PluginConflict
from engine.records import Finding, Quarantined, RunSummary
from engine.rules import RulePackError
from engine.sinks import JsonlSink
from engine.sources import JsonlFiles, count_lines, opened, read_jsonl

EXIT_INVALID = 1
EXIT_CONFIG = 3


def _load_parameters(path: str | None) -> dict[str, dict[str, Any]] | None:
    if path is None:
        return None
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--params") from None
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise click.BadParameter(f"{path}: expected {{pack: {{parameter: value}}}}", param_hint="--params")
    return document


def _build_engine(disable: Sequence[str], options: Sequence[str], params: str | None, strict: bool,
                  backend: str = "compiled", method: str | None = None) -> Engine:
    from engine.evaluation import MethodError

    log = get_logger()
    try:
        engine = Engine(disable=disable, options=options, parameters=_load_parameters(params), strict=strict, backend=backend,
                        evaluation_method=method)
    except (RulePackError, PluginConflict, MethodError) as exc:
        click.echo(f"rectify: configuration error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    for failure in engine.plugins.failures:
        log.warning("plugin_failed", plugin=failure.name, cause=failure.cause)
    log.info("engine_ready", plugins=list(engine.plugins.names), blocked=list(engine.plugins.blocked),
             rules=len(engine.rules), inactive_rules=len(engine.inactive_rules), ruleset=engine.ruleset)
    return engine


def engine_options(function: Any) -> Any:
    """The options every command that builds an engine takes."""
    function = click.option("--backend", type=click.Choice(["compiled", "rete"]), default="compiled", show_default=True,
                            help="Where decision correlations run: plain Python, or durable_rules (same output).")(function)
    function = click.option("--strict", is_flag=True, help="Quarantine events of unknown types instead of counting them.")(function)
    function = click.option("--params", "params", type=click.Path(exists=True, dir_okay=False),
                            help="YAML {pack: {parameter: value}} set by the deploying authority (values marked NF).")(function)
    function = click.option("--option", "options", multiple=True, metavar="NAME",
                            help="Switch on a rule-pack option (e.g. dyeing.gb4287.table3). Repeatable.")(function)
    function = click.option("--disable-plugin", "disable", multiple=True, metavar="NAME",
                            help="Do not load this plugin (also: RECTIFY_DISABLE_PLUGINS=a,b). Repeatable.")(function)
    return function


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]), show_default=True)
@click.version_option(package_name="ningbo-rectify", prog_name="rectify")
def cli(log_level: str) -> None:
    """rectify: findings from enterprise event logs, by industry rule packs."""
    configure(log_level)


def _progress(total: int | None, enabled: bool) -> tqdm:
    return tqdm(total=total, unit="ev", unit_scale=True, disable=not enabled or not sys.stderr.isatty(),
                file=sys.stderr, mininterval=0.5, desc="events")


def execute(engine: Engine, inputs: Iterable[Any], out: JsonlSink, quarantine: JsonlSink | None,
            total: int | None = None, progress: bool = True, as_of: str | None = None, jobs: int = 0) -> RunSummary:
    """Run an engine over inputs, routing findings and quarantine records to their sinks."""
    bar = _progress(total, progress)
    try:
        for record in engine.run_batch(inputs, as_of=as_of, workers=jobs):  # the batch path: same output as run()
            if isinstance(record, Quarantined) and quarantine is not None:
                quarantine.write(record.to_dict())
            else:
                out.write(record.to_dict())
            if engine.summary.read - bar.n >= 4096:
                bar.update(engine.summary.read - bar.n)
        bar.update(engine.summary.read - bar.n)
    finally:
        bar.close()
    get_logger().info("batch_path", quiet=engine.lane_stats["quiet"], exact=engine.lane_stats["exact"], jobs=jobs)
    return engine.summary


def summary_text(summary: RunSummary, seconds: float | None = None) -> str:
    data = summary.to_dict()
    lines = [
        f"read {data['read']}  processed {data['processed']}  duplicate {data['duplicate']}  quarantined {data['quarantined']}"
        + ("" if summary.balanced() else "  (COUNTS DO NOT ADD UP)"),
        f"findings {data['findings_total']}: " + (", ".join(f"{k} {v}" for k, v in data["findings"].items()) or "none"),
        f"decisions {data['decisions_total']}: " + (", ".join(f"{k} {v}" for k, v in data["decisions"].items()) or "none")
        + f"; orders open {data['open_orders']}, closed by verification {data['orders_closed']}",
    ]
    extras = []
    if data["unknown_types"]:
        extras.append("unknown types " + ", ".join(f"{k} {v}" for k, v in data["unknown_types"].items()))
    if data["unregistered_events"]:
        extras.append(f"events of unregistered enterprises {data['unregistered_events']}")
    if data["unavailable_readings"]:
        extras.append(f"readings flagged unavailable (not N) {data['unavailable_readings']}")
    if data["late_readings"]:
        extras.append(f"late minute readings {data['late_readings']}")
    if extras:
        lines.append("; ".join(extras))
    if seconds is not None and seconds > 0:
        lines.append(f"{data['read'] / seconds:,.0f} events/s ({seconds:.2f} s)")
    return "\n".join(lines)


@contextlib.contextmanager
def _output_files(out: str, quarantine: str | None) -> Iterator[tuple[IO[bytes], IO[bytes] | None]]:
    """The --out stream ('-' = stdout) and the optional --quarantine file, closed afterwards."""
    out_stream = _open_out(out)
    q_stream = open(quarantine, "wb") if quarantine else None  # noqa: SIM115
    try:
        yield out_stream, q_stream
    finally:
        if out_stream is not sys.stdout.buffer:
            out_stream.close()
        if q_stream:
            q_stream.close()


def _check_time(value: str | None, option: str) -> str | None:
    from engine.validation import check_date_time

    if value is None:
        return None
    try:
        check_date_time(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} {exc}", param_hint=option) from None
    return value


def _open_out(path: str) -> IO[bytes]:
    return sys.stdout.buffer if path == "-" else open(path, "wb")  # noqa: SIM115 - closed by caller


@cli.command()
@click.argument("events", nargs=-1, required=False, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--out", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Findings as JSON lines ('-' = stdout).")
@click.option("--hj212", "hj212", multiple=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="HJ 212 packet file, read after EVENTS (needs --registry). Repeatable.")
@click.option("--registry", "hj212_registry", type=click.Path(exists=True, dir_okay=False),
              help="HJ 212 registry (MN -> enterprise, outlet, process), YAML or CSV; for --hj212.")
@click.option("--quarantine", type=click.Path(dir_okay=False), help="Quarantined lines as JSON lines (default: in --out).")
@click.option("--summary-json", type=click.Path(dir_okay=False), help="Also write the run summary as JSON.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal.")
@click.option("--as-of", "as_of", callback=lambda ctx, param, value: _check_time(value, "--as-of"),
              help="Reference event time for a replay (RFC 3339): orders due before it escalate.")
@click.option("--store", "store", type=click.Path(dir_okay=False),
              help="Write records to this SQLite store (crash-safe: checkpoints, resumes after a kill).")
@click.option("--checkpoint-every", "checkpoint_every", default=5000, show_default=True, type=click.IntRange(1),
              help="With --store: input lines per checkpoint (records and state in one transaction).")
@click.option("--chain/--no-chain", default=True, show_default=True,
              help="Hash-chain the output records (prev, hash): `rectify verify` checks them.")
@click.option("--cluster", type=click.Choice(["dask"]), default=None,
              help="Distributed replay on Dask, same output as one machine (docs/distributed.md).")
@click.option("--scheduler", metavar="ADDRESS", default=None, help="With --cluster dask: an existing scheduler (tcp://host:8786).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="With --cluster dask: local worker processes (default 2), or how many of the cluster's to use.")
@click.option("--jobs", "jobs", type=click.IntRange(0), default=0, show_default=True,
              help="Processes that sort chunks for the batch path (parse, validate, gate); 0 = in this process. "
                   "Same output; more throughput on more cores.")
@engine_options
def run(events: tuple[str, ...], out: str, quarantine: str | None, summary_json: str | None, progress: bool,
        hj212: tuple[str, ...], hj212_registry: str | None,
        as_of: str | None, disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str,
        store: str | None = None, checkpoint_every: int = 5000, chain: bool = True,
        cluster: str | None = None, scheduler: str | None = None, workers: int | None = None, jobs: int = 0) -> None:
    """Run EVENTS (JSONL files, '-' for stdin) and --hj212 packets through the rules; write findings."""
    stations = _hj212_run_registry(events, hj212, hj212_registry)
    engine = _build_engine(disable, options, params, strict, backend)
    if cluster is not None:  # issue 8: distributed replay on Dask (engine/distributed.py)
        if hj212 or store is not None:
            raise click.UsageError("--cluster dask takes EVENTS files only (no --hj212, no --store)")
        from engine.distributed import cli_run

        return cli_run(events, scheduler=scheduler, workers=workers, out=out, quarantine=quarantine, summary_json=summary_json,
                       as_of=as_of, chain=chain, engine_kwargs=dict(disable=disable, options=options, strict=strict,
                                                                    parameters=_load_parameters(params), backend=backend))
    if store is not None:  # issue 5: crash-safe run into the SQLite store
        from engine.audit_cli import run_store

        return run_store(engine, events, store, checkpoint_every, as_of, summary_json, progress,
                         dict(out=out, quarantine=quarantine, hj212=hj212, options=options, params=params, strict=strict))
    started = time.perf_counter()  # for the throughput line only, never for a decision
    with _output_files(out, quarantine) as (out_stream, q_stream), JsonlSink(out_stream) as plain_out:
        from engine.audit import ChainedWriter

        out_sink: Any = ChainedWriter(plain_out) if chain else plain_out
        q_sink: Any = (ChainedWriter(JsonlSink(q_stream)) if chain else JsonlSink(q_stream)) if q_stream else None
        inputs = _with_hj212(engine, read_jsonl(events), hj212, stations, q_sink or out_sink) if hj212 else JsonlFiles(events)
        summary = execute(engine, inputs, out_sink, q_sink, None if hj212 else count_lines(events), progress, as_of, jobs)
        if q_sink:
            q_sink.close()
    click.echo(summary_text(summary, time.perf_counter() - started), err=True)
    heads = {"chain": {"records": out_sink.written, "head": out_sink.head}} if chain else {}
    if chain:
        click.echo(f"chain head {out_sink.head} ({out_sink.written} records)", err=True)
    if summary_json:
        Path(summary_json).write_bytes(orjson.dumps({"ruleset": engine.ruleset, **summary.to_dict(), **heads}, option=orjson.OPT_INDENT_2))
    get_logger().info("run_finished", ruleset=engine.ruleset, **summary.to_dict())


@cli.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@engine_options
def validate(events: tuple[str, ...], disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Check EVENTS without writing findings; print each bad line's reason. Exit 1 if any."""
    engine = _build_engine(disable, options, params, strict, backend)
    for item in read_jsonl(events):
        for record in engine.process_line(item, item.number):
            if isinstance(record, Quarantined):
                click.echo(f"{record.source}:{record.line}: {record.error}")
    summary = engine.summary
    click.echo(f"read {summary.read}  valid {summary.processed}  duplicate {summary.duplicate}  invalid {summary.quarantined}", err=True)
    if summary.quarantined:
        raise SystemExit(EXIT_INVALID)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rule.")
@engine_options
def rules(as_json: bool, disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """List every rule: id, plugin, basis, verified, and whether it is active (and why not)."""
    engine = _build_engine(disable, options, params, strict, backend)
    for row in engine.rules_table():
        if as_json:
            click.echo(orjson.dumps(row).decode())
            continue
        basis = " ".join(v for v in (row["basis"].get("standard"), row["basis"].get("table")) if v)
        state = "active" if row["active"] else f"inactive: {row['reason']}"
        verified = "verified" if row["verified"] else "UNVERIFIED"
        click.echo(f"{row['id']}\t{row['plugin']}\t{basis}\t{verified}\t{state}")


@cli.command()
@engine_options
def plugins(disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """List loaded, blocked and failed plugins."""
    engine = _build_engine(disable, options, params, strict, backend)
    counts: dict[str, int] = {}
    for rule in engine.rules:
        counts[rule.plugin] = counts.get(rule.plugin, 0) + 1
    for info in engine.plugins.infos:
        click.echo(f"{info.name}\t{info.version}\t{counts.get(info.name, 0)} active rules\t{info.title}")
    for name in engine.plugins.blocked:
        click.echo(f"{name}\tblocked")
    for failure in engine.plugins.failures:
        click.echo(f"{failure.name}\tFAILED\t{failure.cause}")


@cli.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON object.")
@click.option("--as-of", "as_of", callback=lambda ctx, param, value: _check_time(value, "--as-of"),
              help="Reference event time (RFC 3339): orders due before it escalate.")
@click.option("--html", "html", type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML page for officials (no network: inline CSS and SVG).")
@click.option("--method", "method", type=click.Path(exists=True, dir_okay=False),
              help="Mu-average evaluation method (YAML; default: the built-in one).")
@engine_options
def report(events: tuple[str, ...], as_json: bool, as_of: str | None, html: str | None, method: str | None,
           disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Programme summary of EVENTS: lists and routes by industry and district, land freed, progress."""
    from collections import Counter

    from engine.records import Decision, Finding
    from engine.report import programme_report, report_text

    engine = _build_engine(disable, options, params, strict, backend, method)
    decisions = []
    findings: Counter[str] = Counter()
    for record in engine.run(read_jsonl(events), as_of=as_of):
        if isinstance(record, Decision):
            decisions.append(record.to_dict())
        elif isinstance(record, Finding):
            findings[record.enterprise] += 1
    summary = programme_report(decisions, engine.registry, engine.targets())
    if html:
        from engine.report_html import render_html

        Path(html).write_text(render_html(summary, decisions, engine.registry, findings, ruleset=engine.ruleset),
                              encoding="utf-8")
        click.echo(f"report written to {html}", err=True)
    if as_json:
        click.echo(orjson.dumps({"ruleset": engine.ruleset, **summary}, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(report_text(summary))


@cli.command()
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
    from engine.evaluation import ranking_json, ranking_text

    engine = _build_engine(disable, options, params, strict, backend, method)
    engine.evaluation.keep.add(year)
    for _ in engine.run(read_jsonl(events)):
        pass
    closed = year in engine.evaluation.rankings
    rows = engine.evaluation.rankings[year] if closed else engine.evaluation.rank(year)
    if as_json:
        document = {"ruleset": engine.ruleset, **ranking_json(engine.method, year, rows, closed)}
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(ranking_text(engine.method, year, rows, closed))


@cli.command()
@click.option("--enterprises", default=3000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--days", default=2, show_default=True, type=click.IntRange(1, 366))
@click.option("--seed", default=2024, show_default=True, type=int)
@click.option("--out-dir", default="rectify-demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--progress/--no-progress", default=True)
def demo(enterprises: int, days: int, seed: int, out_dir: str, progress: bool) -> None:
    """Generate a synthetic city, run it through every plugin, print a summary."""
    from engine.demo import generate_city, write_jsonl

    started = time.perf_counter()
    city = generate_city(seed=seed, enterprises=enterprises, days=days)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    events_path = folder / "events.jsonl"
    write_jsonl(city.events, events_path)
    engine = _build_engine((), (), None, False)
    findings_path = folder / "findings.jsonl"
    with open(findings_path, "wb") as handle, open(folder / "quarantine.jsonl", "wb") as q_handle:
        from engine.audit import ChainedWriter  # the demo log is chained like `rectify run --out`

        summary = execute(engine, JsonlFiles([events_path]), ChainedWriter(JsonlSink(handle)), JsonlSink(q_handle),
                          len(city.events), progress)
    seconds = time.perf_counter() - started
    from engine.report import programme_report, report_text

    found: set[str] = set()
    decisions = []
    for line in findings_path.read_bytes().splitlines():
        record = orjson.loads(line)
        if record["record"] == "finding" or record.get("list"):  # a class alone is not a violation
            found.add(record["enterprise"])
        if record["record"] == "decision":
            decisions.append(record)
    planted = sum(1 for code in city.violators if code in found)
    click.echo(f"demo city: {enterprises} enterprises, {days} day(s), {len(city.events)} events -> {folder}/")
    click.echo(summary_text(summary, seconds))
    click.echo(f"planted violators with findings or list decisions: {planted} of {len(city.violators)}")
    click.echo("programme summary:")
    click.echo(report_text(programme_report(decisions, engine.registry, engine.targets())))
    click.echo(f"findings and decisions: {findings_path}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="rectify", standalone_mode=True)
    except BrokenPipeError:  # `rectify run ... | head` is fine
        sys.exit(0)


# ---- HJ 212 (issue 7): `rectify ingest hj212` and `rectify run --hj212` ---------------------

def _load_hj212_registry(path: str) -> Any:
    from engine.hj212 import Registry, RegistryError

    try:
        return Registry.load(path)
    except RegistryError as exc:
        raise click.BadParameter(str(exc), param_hint="--registry") from None


def _hj212_run_registry(events: tuple[str, ...], hj212: tuple[str, ...], registry: str | None) -> Any:
    if not events and not hj212:
        raise click.UsageError("give EVENTS and/or --hj212 FILE")
    if hj212 and registry is None:
        raise click.UsageError("--hj212 needs --registry")
    return _load_hj212_registry(registry) if hj212 and registry else None


def _chunks(handle: IO[bytes]) -> Iterable[bytes]:
    return iter(lambda: handle.read(1 << 16), b"")


def _with_hj212(engine: Engine, lines: Iterable[Any], files: Sequence[str], registry: Any, sink: JsonlSink) -> Iterable[Any]:
    """EVENTS first (registrations), then each packet file's events; bad packets go to `sink`, counted."""
    from engine.hj212 import ingest_numbered
    from engine.pipeline import InputLine

    yield from lines
    for path in files:
        with opened(path) as handle:
            for number, item in ingest_numbered(_chunks(handle), registry, source=path):
                if isinstance(item, Quarantined):
                    engine.summary.read += 1
                    engine.summary.quarantined += 1
                    sink.write(item.to_dict())
                else:
                    yield InputLine(source=path, number=number, text=orjson.dumps(item))


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--listen")
    return host.strip("[]"), int(port)


@cli.group()
def ingest() -> None:
    """Turn external monitoring data into CloudEvents JSON lines."""


@ingest.command("hj212")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--registry", required=True, type=click.Path(exists=True, dir_okay=False),
              help="MN -> enterprise, PW, medium, outlet, process / point + destination (YAML or CSV).")
@click.option("--out", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Events as CloudEvents JSON lines ('-' = stdout).")
@click.option("--quarantine", type=click.Path(dir_okay=False), help="Rejected packets as JSON lines (default: in --out).")
@click.option("--listen", metavar="HOST:PORT", help="Accept data loggers over TCP instead of reading FILE (use 127.0.0.1).")
@click.option("--max-connections", default=256, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--idle-timeout", default=300.0, show_default=True, type=click.FloatRange(0.01, 86_400), help="Seconds.")
def ingest_hj212(file: str | None, registry: str, out: str, quarantine: str | None, listen: str | None,
                 max_connections: int, idle_timeout: float) -> None:
    """HJ 212 packets (FILE, '-' for stdin, or --listen) to emission/discharge events."""
    from engine.hj212 import ingest as ingest_packets
    from engine.hj212_listener import ListenerLimits, serve

    if (file is None) == (listen is None):
        raise click.UsageError("give FILE or --listen HOST:PORT (one of them)")
    address = _parse_listen(listen) if listen else None
    stations = _load_hj212_registry(registry)
    counts = {"events": 0, "quarantined": 0}
    with _output_files(out, quarantine) as (out_stream, q_stream):
        out_sink = JsonlSink(out_stream)
        q_sink = JsonlSink(q_stream) if q_stream else out_sink

        def sink(record: Any) -> None:
            if isinstance(record, Quarantined):
                counts["quarantined"] += 1
                q_sink.write(record.to_dict())
            else:
                counts["events"] += 1
                out_sink.write(record)
            if address is not None:  # an acknowledged packet is in the file, not in a buffer
                out_sink.close()
                q_sink.close()

        if address is None:
            with opened(str(file)) as handle:
                for record in ingest_packets(_chunks(handle), stations, source=str(file)):
                    sink(record)
        else:
            if address[0] not in ("127.0.0.1", "::1", "localhost"):
                get_logger().warning("hj212_listen_not_loopback", host=address[0])
            stats = serve(stations, sink, address[0], address[1],
                          ListenerLimits(max_connections=max_connections, idle_timeout=idle_timeout),
                          ready=lambda host, port: click.echo(f"listening on {host}:{port}", err=True))
            get_logger().info("hj212_listener_stopped", **{k: getattr(stats, k) for k in stats.__slots__})
        out_sink.close()
        q_sink.close()
    click.echo(f"events {counts['events']}  quarantined packets {counts['quarantined']}", err=True)


# ---- audit (issue 5): verify, replay, decisions, explain, diff; `run --store` -----------------
from engine import audit_cli as _audit_cli  # noqa: E402,F401  (registers its commands on `cli`)
