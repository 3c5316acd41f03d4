"""What every `rectify` command shares: exit codes, engine options, building the engine, the
output files and the run summary as text. Commands only wire; the work is in the stages.

Exit codes scripts can trust:
  0  the command ran (a run with quarantined lines still ran: see the summary)
  1  `rectify validate` found invalid lines, a broken chain, a damaged store, a divergence, not found, or an
     internal error
  2  usage error (bad option, missing file, a store that does not fit the run)
  3  configuration error (an invalid rule pack, a plugin conflict, an unknown option)
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sqlite3
import os
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import click
import orjson
from tqdm import tqdm

from engine.cli.logs import get_logger
from engine.decide import MethodError
from engine.i18n import LANGS, resolve_lang
from engine.ingest import JsonlFiles
from engine.ingest.archive import Archive, ArchiveError
from engine.ingest.archive import event_sources as sources_of
from engine.ingest.hj212 import Registry, RegistryError
from engine.judge import ParameterError, RulePackError
from engine.pipeline import Engine
from engine.plugins import PluginConflict
from engine.records import RunSummary
from engine.output import DamagedStore, damaged
from engine.run import Outputs
from engine.validate import check_date_time
from engine.validate.yamlsafe import YamlError, read_yaml

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3


def config_error(message: str) -> NoReturn:
    """A configuration error: the message on stderr, exit 3."""
    click.echo(f"rectify: configuration error: {message}", err=True)
    raise SystemExit(EXIT_CONFIG)


def load_parameters(path: str | None, lines: dict[str, int] | None = None) -> dict[str, dict[str, Any]] | None:
    """`--params FILE`: YAML {pack: {parameter: value}}, read by the bounded safe loader; a bad
    file is a configuration error (exit 3) naming the file, line and field. `lines` receives
    the line of each `pack.parameter`, for errors found when the engine checks the values."""
    if path is None:
        return None
    try:
        document = read_yaml(path, lines=lines) or {}
    except YamlError as exc:
        config_error(f"--params {exc}")
    if not isinstance(document, dict):
        config_error(f"--params {path}:1: expected {{pack: {{parameter: value}}}}")
    for pack, values in document.items():
        if not isinstance(values, dict):
            line = (lines or {}).get(str(pack), 1)
            config_error(f"--params {path}:{line}: {pack}: expected {{parameter: value}}, got {type(values).__name__}")
    return document


CLOCK = "rectify.clock"  # where --clock-lead-days and --clock-quorum leave their values (click's ctx.meta)


def clock_settings() -> dict[str, Any]:
    """The clock guard the command's options asked for ({} = the engine's defaults): keyword
    arguments of `Engine` (`clock_lead_days`, `clock_quorum`)."""
    ctx = click.get_current_context(silent=True)
    return dict(ctx.meta.get(CLOCK, {})) if ctx is not None else {}


def build_engine(disable: Sequence[str], options: Sequence[str], params: str | None, strict: bool,
                 backend: str = "compiled", method: str | None = None) -> Engine:
    """The engine the options describe; a configuration error exits 3 with the reason (for a
    `--params` value: the file, line and field)."""
    log = get_logger()
    lines: dict[str, int] = {}
    parameters = load_parameters(params, lines)
    try:
        engine = Engine(disable=disable, options=options, parameters=parameters, strict=strict, backend=backend,
                        evaluation_method=method, **clock_settings())
    except ParameterError as exc:
        field = f"{exc.pack}.{exc.name}"
        if params and field in lines:
            config_error(f"--params {params}:{lines[field]}: {field}: {exc.reason}")
        config_error(str(exc))
    except (RulePackError, PluginConflict, MethodError) as exc:
        config_error(str(exc))
    for failure in engine.plugins.failures:
        log.warning("plugin_failed", plugin=failure.name, cause=failure.cause)
    log.info("engine_ready", plugins=list(engine.plugins.names), blocked=list(engine.plugins.blocked),
             rules=len(engine.rules), inactive_rules=len(engine.inactive_rules), ruleset=engine.ruleset)
    return engine


@contextlib.contextmanager
def store_errors(path: str | None) -> Iterator[None]:
    """A damaged SQLite store (truncated, overwritten, corrupt) met inside: a message, exit 1."""
    try:
        yield
    except DamagedStore as exc:
        click.echo(f"rectify: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    except sqlite3.DatabaseError as exc:
        click.echo(f"rectify: {damaged(path or '(store)', exc)}", err=True)
        raise SystemExit(EXIT_INVALID) from None


def load_registry(path: str) -> Registry:
    """The HJ 212 station registry; a bad file is a usage error naming the entry and field."""
    try:
        return Registry.load(path)
    except RegistryError as exc:
        raise click.BadParameter(str(exc), param_hint="--registry") from None


def host_port(value: str, option: str) -> tuple[str, int]:
    """A HOST:PORT option value ([::1]:PORT for IPv6), or a usage error naming the option."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint=option)
    return host.strip("[]"), int(port)


def chunks(handle: IO[bytes]) -> Iterable[bytes]:
    return iter(lambda: handle.read(1 << 16), b"")


def _clock_lead(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    lead: float | None = None
    if value.strip().lower() != "off":
        try:
            lead = float(value)
        except ValueError:
            lead = math.nan
        if not (math.isfinite(lead) and lead > 0):
            raise click.BadParameter(f"{value!r} is neither a positive number of days nor 'off'", ctx, param)
    ctx.meta.setdefault(CLOCK, {})["clock_lead_days"] = lead


def _clock_quorum(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        ctx.meta.setdefault(CLOCK, {})["clock_quorum"] = value


def engine_options(function: Any) -> Any:
    """The options every command that builds an engine takes. The clock guard's two options are
    read by `build_engine` (through `clock_settings`), not passed to the command."""
    function = click.option("--clock-quorum", type=click.IntRange(1, 1000), default=None, expose_value=False,
                            callback=_clock_quorum, metavar="N",
                            help="Enterprises whose events must agree before the event-time clock jumps more than "
                                 "--clock-lead-days ahead (default 2).")(function)
    function = click.option("--clock-lead-days", type=str, default=None, expose_value=False, callback=_clock_lead,
                            metavar="DAYS|off",
                            help="How far one event may move the event-time clock ahead on its own (default 7 days; "
                                 "'off': every later event moves it, as before the guard).")(function)
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


def check_time(value: str | None, option: str) -> str | None:
    """An RFC 3339 option value, or a usage error saying why not."""
    if value is None:
        return None
    try:
        check_date_time(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} {exc}", param_hint=option) from None
    return value


def time_option(name: str, help: str | None = None) -> Any:
    """An RFC 3339 event-time option (--as-of, --since, --until)."""
    return click.option(name, name.lstrip("-").replace("-", "_"), help=help,
                        callback=lambda ctx, param, value: check_time(value, name))


def lang_option(function: Any) -> Any:
    """`--lang zh|en` for human-facing output; the default from the locale (zh where LC_ALL,
    LC_MESSAGES or LANG starts with zh). JSON output is the same in every language."""
    return click.option("--lang", "lang", type=click.Choice(LANGS), default=None,
                        callback=lambda ctx, param, value: resolve_lang(value),
                        help="Language of the text, page or notice (default: from LANG; zh where it starts with zh).")(function)


@contextlib.contextmanager
def input_files(paths: Sequence[str]) -> Iterator[list[str]]:
    """Event files that can be read twice: standard input ('-') is copied to a temporary file."""
    if "-" not in paths:
        yield list(paths)
        return
    with tempfile.TemporaryDirectory(prefix="rectify-") as folder:
        spooled = str(Path(folder) / "stdin.jsonl")
        with open(spooled, "wb") as handle:
            shutil.copyfileobj(sys.stdin.buffer, handle)
        yield [spooled if path == "-" else path for path in paths]


def font_error(exc: Exception) -> None:
    """A missing CJK font (the page and the notices embed one): exit 3 with the way to get it."""
    click.echo(f"rectify: {exc}", err=True)
    raise SystemExit(EXIT_CONFIG) from None


def progress_bar(total: int | None, enabled: bool) -> tqdm:
    """A progress bar on a terminal (off otherwise)."""
    return tqdm(total=total, unit="ev", unit_scale=True, disable=not enabled or not sys.stderr.isatty(),
                file=sys.stderr, mininterval=0.5, desc="events")


@contextlib.contextmanager
def output_files(out: str, quarantine: str | None) -> Iterator[tuple[IO[bytes], IO[bytes] | None]]:
    """The --out stream ('-' = stdout) and the optional --quarantine file, closed afterwards."""
    out_stream = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
    q_stream = open(quarantine, "wb") if quarantine else None  # noqa: SIM115
    try:
        yield out_stream, q_stream
    finally:
        if out_stream is not sys.stdout.buffer:
            out_stream.close()
        if q_stream:
            q_stream.close()


def summary_text(summary: RunSummary, seconds: float | None = None, lang: str = "en") -> str:
    """The run summary for people, in `lang` (engine/report/text.py `run_text`)."""
    from engine.report.text import run_text  # the report package loads Jinja and fonts: only when printing

    return run_text(summary.to_dict(), summary.balanced(), seconds, lang)


def report_run(ruleset: str, summary: RunSummary, outputs: Outputs | None, seconds: float, summary_json: str | None,
               lang: str = "en", **extra: Any) -> None:
    """The end of a run, the same for every way to run: the summary on stderr, the chain head,
    the summary JSON file, the log line."""
    click.echo(summary_text(summary, seconds, lang), err=True)
    chain = outputs.chain_info() if outputs is not None else {}
    if chain:
        click.echo(f"chain head {chain['chain']['head']} ({chain['chain']['records']} records)", err=True)
    if summary_json:
        Path(summary_json).write_bytes(orjson.dumps({"ruleset": ruleset, **summary.to_dict(), **chain, **extra},
                                                    option=orjson.OPT_INDENT_2))
    get_logger().info("run_finished", ruleset=ruleset, **summary.to_dict())


def event_sources(events: Sequence[str]) -> list[JsonlFiles | Archive]:
    """EVENTS as inputs in their order (engine/ingest/archive.py `event_sources`); an archive this
    rectify cannot read exits with its message (usage error)."""
    try:
        return sources_of(events)
    except ArchiveError as exc:
        click.echo(f"rectify: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None


def one_source(events: Sequence[str]) -> JsonlFiles | Archive:
    """EVENTS for a command that takes JSONL files or one archive (a usage error otherwise)."""
    sources = event_sources(events)
    if len(sources) != 1:
        raise click.UsageError("give JSONL files, or one archive directory (from `rectify archive`), not both")
    return sources[0]


def fork_is_safe() -> bool:
    """Whether this process may fork a worker that runs engine code: on Linux, with no thread but
    its own (not inside a host application or a test runner's threads, whose locks a child could
    inherit held)."""
    return sys.platform == "linux" and threading.active_count() == 1


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
