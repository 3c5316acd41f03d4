"""What-if: the same event log under two rule-set configurations, compared.

A configuration is a spec string, items separated by commas:

    default                      the installed plugins, no options, no parameters
    option:NAME                  switch a rule-pack option on (e.g. option:dyeing.gb4287.table3)
    params:FILE (or just FILE)   parameters the deploying authority sets (YAML {pack: {name: value}})
    disable:PLUGIN               do not load a plugin

`compare` runs both and says which enterprises' findings and decisions change: a finding is
matched by (rule, time, evidence events), a decision by (decision rule, list, action, time);
a matched finding whose judged value, limit or rule version differs is "changed". Counts per
list and action (decisions) and per rule (findings) come with both sides and the difference.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.fast.workers import ended_early, failed, freeze_existing, thaw
from engine.records import Decision, Finding
from engine.validate.yamlsafe import YamlError, read_yaml


class SpecError(ValueError):
    """A configuration spec that cannot be read."""


@dataclass(slots=True)
class Config:
    spec: str
    options: list[str] = field(default_factory=list)
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    disable: list[str] = field(default_factory=list)


def parse_spec(spec: str) -> Config:
    config = Config(spec)
    for item in (x.strip() for x in spec.split(",")):
        if not item or item == "default":
            continue
        kind, sep, value = item.partition(":")
        if sep and kind == "option":
            config.options.append(value)
        elif sep and kind == "disable":
            config.disable.append(value)
        elif (sep and kind == "params") or Path(item).is_file():
            path = value if sep and kind == "params" else item
            try:
                document = read_yaml(path) or {}
            except YamlError as exc:
                raise SpecError(f"{spec!r}: cannot read {exc}") from None
            if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
                raise SpecError(f"{spec!r}: {path} must be {{pack: {{parameter: value}}}}")
            for pack, values in document.items():
                config.parameters.setdefault(pack, {}).update(values)
        else:
            raise SpecError(f"{spec!r}: {item!r} is not default, option:NAME, params:FILE, disable:PLUGIN or a file")
    return config


def _finding_key(f: Finding) -> tuple[Any, ...]:
    return ("finding", f.rule, f.time, f.event)


def _decision_key(d: Decision) -> tuple[Any, ...]:
    return ("decision", d.rule, d.list, d.action, d.time)


_Collected = dict[str, dict[tuple[Any, ...], Finding | Decision]]  # enterprise -> record key -> record


def _collect(records: Iterable[Any]) -> _Collected:
    by: _Collected = {}
    for record in records:
        if isinstance(record, Finding):
            by.setdefault(record.enterprise, {})[_finding_key(record)] = record
        elif isinstance(record, Decision):
            by.setdefault(record.enterprise, {})[_decision_key(record)] = record
    return by


def _brief(record: Finding | Decision) -> dict[str, Any]:
    if isinstance(record, Finding):
        return {"record": "finding", "id": record.id, "rule": record.rule, "rule_version": record.rule_version,
                "time": record.time, "judged": record.judged, "limit": dict(record.limit) if record.limit else None}
    return {"record": "decision", "id": record.id, "rule": record.rule, "list": record.list, "action": record.action,
            "time": record.time, "deadline": record.deadline}


def _counts(by: dict[str, dict[tuple[Any, ...], Finding | Decision]]) -> tuple[Counter[str], Counter[str]]:
    decisions: Counter[str] = Counter()
    findings: Counter[str] = Counter()
    for records in by.values():
        for record in records.values():
            if isinstance(record, Decision):
                decisions[f"{record.list or '-'}/{record.action}"] += 1
            else:
                findings[record.rule] += 1
    return decisions, findings


def _side_by_side_replays(engine_a: Any, engine_b: Any, lines: Callable[[], Iterable[Any]], as_of: str | None
                          ) -> tuple[_Collected, _Collected]:
    """A's records replayed here, B's in a forked process at the same time (sent back pickled)."""
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_replay_in_child, args=(engine_b, lines, as_of, sending, receiving),
                            name="rectify-diff-b", daemon=True)
    frozen = freeze_existing()
    try:
        child.start()
        sending.close()  # the child holds the sending end
        a = _collect(engine_a.run_batch(lines(), as_of=as_of))
        try:
            outcome, b = receiving.recv()
        except EOFError:
            raise ended_early(child, "the records of configuration B") from None
        if outcome == "error":
            raise b
        if outcome == "failed":
            raise failed(child.name, "the replay of configuration B", b)
        return a, b
    finally:
        if child.pid is not None:  # started
            if child.is_alive():
                child.terminate()
            child.join()
        receiving.close()
        sending.close()
        thaw(frozen)


def _replay_in_child(engine: Any, lines: Callable[[], Iterable[Any]], as_of: str | None, pipe: Any,
                     other_end: Any) -> None:
    other_end.close()  # inherited: with it open here, sending the records could wait forever for a parent that died
    try:
        pipe.send(("ok", _collect(engine.run_batch(lines(), as_of=as_of))))
    except BrokenPipeError:
        pass  # the parent is gone: nobody to tell
    except BaseException as exc:  # noqa: BLE001 - raised again in the parent, as a sequential run would
        try:
            pipe.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its traceback as text
            pipe.send(("failed", "".join(traceback.format_exception(exc))))
    finally:
        pipe.close()


def _side_by_side(a: Counter[str], b: Counter[str]) -> dict[str, dict[str, int]]:
    return {k: {"a": a[k], "b": b[k], "change": b[k] - a[k]} for k in sorted(set(a) | set(b))}


def compare(build: Callable[[Config], Any], spec_a: str, spec_b: str, lines: Callable[[], Iterable[Any]],
            as_of: str | None = None, concurrent: bool = False) -> dict[str, Any]:
    """Run the log (`lines()` gives a fresh iterable) under both specs; what changes, by enterprise.

    Both engines are built first (a configuration error comes before any replay). With
    `concurrent`, B's replay runs in a forked process while this one replays A: the two are
    independent, so the result is the same, in about half the time on two free cores. Fork only
    where it is safe: the caller's process runs no other thread (the CLI checks)."""
    engine_a, engine_b = (build(parse_spec(spec)) for spec in (spec_a, spec_b))
    if concurrent:
        a, b = _side_by_side_replays(engine_a, engine_b, lines, as_of)
    else:
        a, b = (_collect(engine.run_batch(lines(), as_of=as_of)) for engine in (engine_a, engine_b))
    enterprises = []
    for code in sorted(set(a) | set(b)):
        left, right = a.get(code, {}), b.get(code, {})
        only_a = [_brief(left[k]) for k in left if k not in right]
        only_b = [_brief(right[k]) for k in right if k not in left]
        changed = []
        for key in left:
            if key in right and isinstance(left[key], Finding):
                x, y = left[key], right[key]
                assert isinstance(x, Finding) and isinstance(y, Finding)
                if (x.judged, x.limit, x.rule_version) != (y.judged, y.limit, y.rule_version):
                    changed.append({"a": _brief(x), "b": _brief(y)})
        if only_a or only_b or changed:
            count = Counter(type(r).__name__.lower() for r in left.values())
            count_b = Counter(type(r).__name__.lower() for r in right.values())
            enterprises.append({"enterprise": code, "findings": {"a": count["finding"], "b": count_b["finding"]},
                                "decisions": {"a": count["decision"], "b": count_b["decision"]},
                                "only_a": only_a, "only_b": only_b, "changed": changed})
    decisions_a, findings_a = _counts(a)
    decisions_b, findings_b = _counts(b)
    return {
        "a": {"spec": spec_a, "ruleset": engine_a.ruleset}, "b": {"spec": spec_b, "ruleset": engine_b.ruleset},
        "enterprises_changed": len(enterprises),
        "decisions_by_list_action": _side_by_side(decisions_a, decisions_b),
        "findings_by_rule": {k: v for k, v in _side_by_side(findings_a, findings_b).items() if v["change"]},
        "enterprises": enterprises,
    }


def diff_text(result: dict[str, Any]) -> str:
    lines = [f"A: {result['a']['spec']}  ({result['a']['ruleset'][:19]}…)",
             f"B: {result['b']['spec']}  ({result['b']['ruleset'][:19]}…)",
             f"enterprises whose findings or decisions change: {result['enterprises_changed']}", "",
             f"{'list/action':<52}{'A':>7}{'B':>7}{'B-A':>7}"]
    for key, row in result["decisions_by_list_action"].items():
        lines.append(f"{key:<52}{row['a']:>7}{row['b']:>7}{row['change']:>+7}")
    if result["findings_by_rule"]:
        lines += ["", f"{'findings by rule (changed only)':<52}{'A':>7}{'B':>7}{'B-A':>7}"]
        for key, row in result["findings_by_rule"].items():
            lines.append(f"{key:<52}{row['a']:>7}{row['b']:>7}{row['change']:>+7}")
    if result["enterprises"]:
        lines += ["", f"{'enterprise':<20}{'findings A':>11}{'B':>5}{'decisions A':>13}{'B':>5}  what changes"]
        for row in result["enterprises"]:
            what = [f"-{r['action'] if r['record'] == 'decision' else r['rule']}" for r in row["only_a"]]
            what += [f"+{r['action'] if r['record'] == 'decision' else r['rule']}" for r in row["only_b"]]
            what += [f"~{c['a']['rule']}" for c in row["changed"]]
            lines.append(f"{row['enterprise']:<20}{row['findings']['a']:>11}{row['findings']['b']:>5}"
                         f"{row['decisions']['a']:>13}{row['decisions']['b']:>5}  {' '.join(what)}")
    return "\n".join(lines)
