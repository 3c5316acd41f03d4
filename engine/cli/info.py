"""`rectify rules` and `rectify plugins`: what the engine has loaded, and why a rule is inactive."""

from __future__ import annotations

import click
import orjson

from engine.cli.common import build_engine, engine_options


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rule.")
@engine_options
def rules(as_json: bool, disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """List every rule: id, plugin, basis, verified, and whether it is active (and why not)."""
    engine = build_engine(disable, options, params, strict, backend)
    for row in engine.rules_table():
        if as_json:
            click.echo(orjson.dumps(row).decode())
            continue
        basis = " ".join(v for v in (row["basis"].get("standard"), row["basis"].get("table")) if v)
        state = "active" if row["active"] else f"inactive: {row['reason']}"
        verified = "verified" if row["verified"] else "UNVERIFIED"
        click.echo(f"{row['id']}\t{row['plugin']}\t{basis}\t{verified}\t{state}")


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
