"""`rectify report --html`: one self-contained page for officials.

No network and no scripts: inline CSS, and charts drawn here as inline SVG. The page shows
the numbers of `engine.report.programme_report` (progress against the programme targets,
counts per list and route by district and industry, land freed, mu-average classes) and the
worst offenders. Every number a test or an auditor may want to check carries a `data-k`
attribute naming it (e.g. `data-k="list_action/scattered_polluted/rectify"`), so the page can
be compared with the decision log mechanically. The output depends on its inputs only (no
date, no wall clock): the same log gives the same bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

WORST = 20  # rows of the worst-offenders table

_LIST_TITLES = {
    "backward_capacity": "Backward capacity (淘汰落后产能)",
    "high_consumption_low_efficiency": "High consumption, low efficiency (高耗低效)",
    "scattered_polluted": "Scattered and polluted (低散乱污)",
}
_PROGRESS_TITLES = {
    "backward_capacity_eliminated": "Backward-capacity enterprises eliminated",
    "high_consumption_low_efficiency": "High-consumption low-efficiency enterprises listed",
    "scattered_polluted": "Scattered and polluted enterprises listed",
    "land_freed_mu": "Low-efficiency land freed (mu)",
    "tax_per_mu": "Tax per mu of evaluated enterprises (yuan/mu)",
}
_PALETTE = ("#1f5f8b", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d6a9f", "#30343f", "#c05746", "#7c9885", "#b8b08d")
_CLASS_COLOURS = {"A": "#2e7d32", "B": "#7cb342", "C": "#f9a825", "D": "#c62828"}

_CSS = """
body{font-family:"Noto Sans","Noto Sans CJK SC","Microsoft YaHei",Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:2px solid #1f5f8b;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eef3f7}.muted{color:#666;font-size:.85em}
.kpis{display:flex;flex-wrap:wrap;gap:1em}.kpi{border:1px solid #ccd;border-radius:6px;padding:.6em 1em;min-width:12em}
.kpi b{display:block;font-size:1.5em}svg text{font-family:inherit}.wide{overflow-x:auto;max-width:100%}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}" if not value.is_integer() else f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _num(key: str, value: Any, tag: str = "td") -> str:
    """A number cell that names what it is; `data-v` holds the raw value for machines."""
    raw = "" if value is None else repr(value) if isinstance(value, float) else str(value)
    return f'<{tag} class="n" data-k="{escape(key)}" data-v="{escape(raw)}">{escape(_fmt(value))}</{tag}>'


def _bar_chart(title: str, rows: Sequence[tuple[str, Mapping[str, float]]], series: Sequence[str],
               colours: Mapping[str, str] | None = None, width: int = 760) -> str:
    """Horizontal stacked bars: one row per label, one segment per series."""
    if not rows or not series:
        return ""
    colours = colours or {s: _PALETTE[i % len(_PALETTE)] for i, s in enumerate(series)}
    label_w, bar_h, gap, top = 170, 18, 6, 24
    legend_h = 18 * ((len(series) + 1) // 2)
    height = top + len(rows) * (bar_h + gap) + legend_h + 10
    scale_max = max((sum(v.get(s, 0) for s in series) for _, v in rows), default=0) or 1
    plot_w = width - label_w - 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>{escape(title)}</title>",
             f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>']
    for index, (label, values) in enumerate(rows):
        y = top + index * (bar_h + gap)
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="12" text-anchor="end">{escape(label)}</text>')
        x = float(label_w)
        total = 0.0
        for name in series:
            value = values.get(name, 0)
            if value <= 0:
                continue
            w = plot_w * value / scale_max
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colours[name]}">'
                         f"<title>{escape(label)}: {escape(name)} {_fmt(value)}</title></rect>")
            x += w
            total += value
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 13}" font-size="12">{escape(_fmt(total))}</text>')
    y = top + len(rows) * (bar_h + gap) + 4
    for index, name in enumerate(series):
        lx, ly = (index % 2) * (width // 2), y + (index // 2) * 18
        parts.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colours[name]}"/>'
                     f'<text x="{lx + 16}" y="{ly + 11}" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _progress_chart(progress: Mapping[str, Mapping[str, Any]], width: int = 760) -> str:
    rows = [(name, item) for name, item in progress.items() if item.get("percent") is not None]
    if not rows:
        return ""
    label_w, bar_h, gap, top = 330, 20, 8, 24
    height = top + len(rows) * (bar_h + gap) + 6
    plot_w = width - label_w - 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             "<title>Progress against the programme targets</title>",
             '<text x="0" y="16" font-size="14" font-weight="bold">Progress against the programme targets (% of target)</text>']
    for index, (name, item) in enumerate(rows):
        y = top + index * (bar_h + gap)
        share = max(0.0, min(100.0, float(item["percent"])))
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">{escape(_PROGRESS_TITLES.get(name, name))}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="{bar_h}" fill="#e6e6e6"/>'
                     f'<rect x="{label_w}" y="{y}" width="{plot_w * share / 100:.1f}" height="{bar_h}" fill="#1f5f8b"/>'
                     f'<text x="{label_w + plot_w + 6}" y="{y + 14}" font-size="12">{item["percent"]:.2f} %</text>')
    parts.append("</svg>")
    return "".join(parts)


def _count_table(prefix: str, title: str, groups: Mapping[str, Mapping[str, int]], keys: Sequence[str]) -> str:
    head = "".join(f'<th class="n">{escape(k).replace("/", "/<wbr>").replace("_", "_<wbr>")}</th>' for k in keys)
    rows = []
    for group, counts in groups.items():
        cells = "".join(_num(f"{prefix}/{group}/{k}", counts.get(k, 0)) for k in keys)
        rows.append(f"<tr><th>{escape(group)}</th>{cells}{_num(f'{prefix}/{group}/total', sum(counts.values()))}</tr>")
    return f'<div class="wide"><table><tr><th>{escape(title)}</th>{head}<th class="n">total</th></tr>{"".join(rows)}</table></div>'


def worst_offenders(decisions: Iterable[Mapping[str, Any]], registry: Mapping[str, Mapping[str, Any]],
                    findings: Mapping[str, int], limit: int = WORST) -> list[dict[str, Any]]:
    """Enterprises on a list, worst first: closed by law, then the number of list decisions,
    then findings, then the lowest mu-average score, then enterprise code."""
    listed: dict[str, list[str]] = {}
    closed: set[str] = set()
    evaluation: dict[str, Mapping[str, Any]] = {}
    for record in decisions:
        enterprise = record["enterprise"]
        if record.get("evaluation") is not None:
            previous = evaluation.get(enterprise)
            if previous is None or record["evaluation"]["year"] >= previous["year"]:
                evaluation[enterprise] = {**record["evaluation"], "surcharge": record.get("surcharge_yuan_per_kwh")}
        if record["list"] is None:
            continue
        listed.setdefault(enterprise, []).append(f"{record['list']}/{record['action']}")
        if record["action"] == "close_by_law":
            closed.add(enterprise)

    def key(code: str) -> tuple[Any, ...]:
        score = evaluation.get(code, {}).get("score")
        return (code not in closed, -len(listed[code]), -findings.get(code, 0), score if score is not None else float("inf"), code)

    rows = []
    for code in sorted(listed, key=key)[:limit]:
        registration = registry.get(code, {})
        ev = evaluation.get(code, {})
        rows.append({"enterprise": code, "name": registration.get("name", ""), "district": registration.get("district", "unregistered"),
                     "industry": registration.get("industry", "unregistered"), "decisions": sorted(listed[code]),
                     "closed_by_law": code in closed, "findings": findings.get(code, 0), "class": ev.get("class"),
                     "score": ev.get("score"), "surcharge": ev.get("surcharge"),
                     "land_area_mu": registration.get("land_area_mu")})
    return rows


def render_html(report: Mapping[str, Any], decisions: Sequence[Mapping[str, Any]], registry: Mapping[str, Mapping[str, Any]],
                findings: Mapping[str, int] | None = None, *, ruleset: str = "", title: str = "Manufacturing upgrade programme") -> str:
    """The page, as a string (UTF-8 when written)."""
    findings = findings or Counter()
    keys = [k for k in report["by_list_action"] if k != "unlisted/classify"]
    out: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)} — report</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">From {_fmt(report["decisions"])} decision records. Rule set <code>{escape(ruleset)}</code>. '
        "Decisions depend on event time only: the same event log gives the same page.</p>",
    ]
    # key figures
    out.append('<div class="kpis">')
    for name, count in report["enterprises_per_list"].items():
        out.append(f'<div class="kpi">{escape(_LIST_TITLES.get(name, name))}<b data-k="enterprises/{name}" data-v="{count}">{_fmt(count)}</b>enterprises</div>')
    out.append(f'<div class="kpi">Land freed<b data-k="land_freed_mu" data-v="{report["land_freed_mu"]!r}">{_fmt(report["land_freed_mu"])}</b>mu</div>')
    out.append(f'<div class="kpi">Decisions<b data-k="decisions" data-v="{report["decisions"]}">{_fmt(report["decisions"])}</b>records</div>')
    out.append("</div>")
    # progress
    out.append("<h2>Progress against the programme targets</h2><table><tr><th>target</th><th class=\"n\">value</th>"
               "<th class=\"n\">target</th><th class=\"n\">% of target</th></tr>")
    for name, item in report["progress"].items():
        out.append(f"<tr><th>{escape(_PROGRESS_TITLES.get(name, name))}</th>{_num(f'progress/{name}/value', item['value'])}"
                   f"{_num(f'progress/{name}/target', item['target'])}{_num(f'progress/{name}/percent', item['percent'])}</tr>")
    out.append("</table>")
    out.append(_progress_chart(report["progress"]))
    # lists and routes
    out.append("<h2>Decisions per list and route</h2><table><tr><th>list / route</th><th class=\"n\">decisions</th></tr>")
    for key, count in report["by_list_action"].items():
        out.append(f"<tr><th>{escape(key)}</th>{_num(f'list_action/{key}', count)}</tr>")
    out.append("</table>")
    out.append('<p class="muted">An enterprise counts once per list in the key figures; here every decision counts '
               "(an order and its escalation are two). <code>unlisted/classify</code> records a mu-average class only.</p>")
    for prefix, field, heading in (("district", "by_district", "District"), ("industry", "by_industry", "Industry")):
        groups = report[field]
        out.append(f"<h2>By {heading.lower()}</h2>")
        out.append(_count_table(prefix, heading, groups, keys))
        rows = [(group, {k: float(v) for k, v in counts.items() if k in keys}) for group, counts in groups.items()]
        out.append(_bar_chart(f"Decisions per list and route by {heading.lower()}", rows, keys))
    # mu-average evaluation
    evaluation = report.get("evaluation") or {}
    if evaluation:
        out.append("<h2>Mu-average evaluation</h2>")
        for year, item in evaluation.items():
            classes = sorted({c for counts in item["classes"].values() for c in counts})
            out.append(f"<h3>{escape(year)}</h3>")
            out.append(_count_table(f"classes/{year}", "population", item["classes"], classes))
            rows = [(pop, {c: float(n) for c, n in counts.items()}) for pop, counts in item["classes"].items()]
            colours = {c: _CLASS_COLOURS.get(c, _PALETTE[i % len(_PALETTE)]) for i, c in enumerate(classes)}
            out.append(_bar_chart(f"Classes {year} by population", rows, classes, colours))
            if item["surcharge_yuan_per_kwh"]:
                out.append("<table><tr><th>differentiated electricity surcharge (yuan/kWh)</th><th class=\"n\">enterprises</th></tr>")
                for level, count in item["surcharge_yuan_per_kwh"].items():
                    out.append(f"<tr><th>+{escape(level)}</th>{_num(f'surcharge/{year}/{level}', count)}</tr>")
                out.append("</table>")
            if item.get("tax_per_mu") is not None:
                out.append(f'<p>Tax per mu of the evaluated enterprises (land-weighted): '
                           f'<b data-k="tax_per_mu/{escape(year)}" data-v="{item["tax_per_mu"]!r}">{_fmt(item["tax_per_mu"])}</b> yuan/mu</p>')
    # worst offenders
    worst = worst_offenders(decisions, registry, findings)
    out.append(f"<h2>Worst offenders (top {WORST})</h2>")
    out.append('<p class="muted">Enterprises on a list, ordered: closed by law first, then the number of list decisions, '
               "then findings, then the lowest mu-average score.</p>")
    if worst:
        out.append("<table><tr><th>#</th><th>enterprise</th><th>name</th><th>district</th><th>industry</th><th>decisions</th>"
                   "<th class=\"n\">findings</th><th>class</th><th class=\"n\">score</th><th class=\"n\">surcharge yuan/kWh</th>"
                   "<th class=\"n\">land mu</th></tr>")
        for number, row in enumerate(worst, start=1):
            code = row["enterprise"]
            out.append(
                f'<tr data-enterprise="{escape(code)}"><td>{number}</td><td><code>{escape(code)}</code></td><td>{escape(row["name"])}</td>'
                f'<td>{escape(row["district"])}</td><td>{escape(row["industry"])}</td>'
                f'<td>{"<br>".join(escape(d) for d in row["decisions"])}</td>{_num(f"worst/{code}/findings", row["findings"])}'
                f'<td>{escape(row["class"] or "")}</td>{_num(f"worst/{code}/score", row["score"])}'
                f'{_num(f"worst/{code}/surcharge", row["surcharge"])}{_num(f"worst/{code}/land", row["land_area_mu"])}</tr>')
        out.append("</table>")
    else:
        out.append("<p>No enterprise is on a list.</p>")
    out.append("</body></html>")
    return "\n".join(part for part in out if part) + "\n"
