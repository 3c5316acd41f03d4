"""`rectify demo`: a synthetic city generated, run through every plugin, summarised."""

from __future__ import annotations

import time
from pathlib import Path

import click
import orjson

from engine.cli.common import build_engine, lang_option, progress_bar, summary_text
from engine.devtools.demo import generate_city, with_follow_up, write_jsonl
from engine.i18n import translator
from engine.ingest import JsonlFiles
from engine.output import JsonlSink
from engine.report import programme_report, report_text
from engine.run import Outputs, Run, manifest, manifest_path


@click.command()
@click.option("--enterprises", default=3000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--days", default=2, show_default=True, type=click.IntRange(1, 366))
@click.option("--seed", default=2024, show_default=True, type=int)
@click.option("--out-dir", default="rectify-demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--progress/--no-progress", default=True)
@lang_option
def demo(enterprises: int, days: int, seed: int, out_dir: str, progress: bool, lang: str) -> None:
    """Generate a synthetic city and a year of the bureau's follow-up (verifications, deadlines,
    approvals), run it through every plugin, print a summary."""
    started = time.perf_counter()
    city = with_follow_up(generate_city(seed=seed, enterprises=enterprises, days=days), seed=seed)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    events_path = folder / "events.jsonl"
    write_jsonl(city.events, events_path)
    engine = build_engine((), (), None, False)
    findings_path = folder / "findings.jsonl"
    Path(manifest_path(str(findings_path))).write_bytes(orjson.dumps(  # for `rectify replay`
        manifest(engine, quarantine_separate=True), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    with open(findings_path, "wb") as handle, open(folder / "quarantine.jsonl", "wb") as q_handle:
        outputs = Outputs(JsonlSink(handle), JsonlSink(q_handle))  # chained like `rectify run --out`
        bar = progress_bar(len(city.events), progress)
        try:
            summary = Run(engine, outputs, progress=bar).feed(JsonlFiles([events_path])).finish()
        finally:
            bar.close()
            outputs.close()
    seconds = time.perf_counter() - started
    found: set[str] = set()
    decisions, land_findings = [], []
    for line in findings_path.read_bytes().splitlines():
        record = orjson.loads(line)
        if record["record"] == "finding" or record.get("list"):  # a class alone is not a violation
            found.add(record["enterprise"])
        if record["record"] == "decision":
            decisions.append(record)
        elif record.get("parcel"):  # findings about parcels: standard-land commitments
            land_findings.append(record)
    planted = sum(1 for code in city.violators if code in found)
    _ = translator(lang).gettext
    click.echo(_("demo city: {enterprises} enterprises, {days} day(s), {events} events -> {folder}/").format(
        enterprises=enterprises, days=days, events=len(city.events), folder=folder))
    click.echo(summary_text(summary, seconds, lang))
    click.echo(_("planted violators with findings or list decisions: {found} of {planted}").format(
        found=planted, planted=len(city.violators)))
    click.echo(_("programme summary:"))
    click.echo(report_text(programme_report(decisions, engine.registry, engine.targets(), engine.parcels.registry,
                                            land_findings), lang))
    click.echo(_("findings and decisions: {path}").format(path=findings_path))
