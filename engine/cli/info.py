"""`rectify rules` and `rectify plugins`: what the engine has loaded, and why a rule is inactive."""

from __future__ import annotations

import click
import orjson

from engine.cli.common import build_engine, engine_options, lang_option
from engine.i18n import translator
from engine.report import rule_infos


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rule.")
@lang_option
@engine_options
def rules(as_json: bool, lang: str, disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool,
          backend: str) -> None:
    """List every rule: id, plugin, basis, verified, whether it is active (and why not); in
    Chinese also the rule's title."""
    engine = build_engine(disable, options, params, strict, backend)
    tr = translator(lang)
    _ = tr.gettext
    titles = rule_infos(engine)[0] if not as_json else {}
    for row in engine.rules_table():
        if as_json:
            click.echo(orjson.dumps(row).decode())
            continue
        basis = " ".join(tr.label(k, row["basis"][k]) for k in ("standard", "table") if row["basis"].get(k))
        state = _("active") if row["active"] else _("inactive: {reason}").format(reason=row["reason"])
        verified = _("verified") if row["verified"] else _("UNVERIFIED")
        title = titles[row["id"]].title(tr.lang) if row["id"] in titles else row["title"]
        line = f"{row['id']}\t{tr.label('plugin', row['plugin'])}\t{basis}\t{verified}\t{state}"
        click.echo(line + (f"\t{title}" if tr.lang == "zh" else ""))  # English: the columns scripts read


@click.command()
@engine_options
def plugins(disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """List loaded, blocked and failed plugins."""
    engine = build_engine(disable, options, params, strict, backend)
    counts: dict[str, int] = {}
    for rule in engine.rules:
        counts[rule.plugin] = counts.get(rule.plugin, 0) + 1
    for info in engine.plugins.infos:
        click.echo(f"{info.name}\t{info.version}\t{counts.get(info.name, 0)} active rules\t{info.title}")
    for name in engine.plugins.blocked:
        click.echo(f"{name}\tblocked")
    for failure in engine.plugins.failures:
        click.echo(f"{failure.name}\tFAILED\t{failure.cause}")
