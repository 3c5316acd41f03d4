"""Charts as inline SVG (no scripts, no network): stacked horizontal bars, progress bars and a
timeline of columns. In: labels and numbers already translated. Out: an SVG string that scales to
its container (viewBox, width 100 %), with a <title> per shape for the exact value."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

PALETTE = ("#1f5f8b", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d6a9f", "#30343f", "#c05746", "#7c9885", "#b8b08d")
CLASS_COLOURS = {"A": "#2e7d32", "B": "#7cb342", "C": "#f9a825", "D": "#c62828"}
SEVERITY_COLOURS = {"critical": "#8e0000", "major": "#d1495b", "minor": "#edae49"}


def _svg(width: int, height: int, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
            f'style="width:100%;max-width:{width}px;height:auto">', f"<title>{escape(title)}</title>"]


def bars(title: str, rows: Sequence[tuple[str, Mapping[str, float]]], series: Sequence[str],
         names: Mapping[str, str], fmt: Callable[[float], str], colours: Mapping[str, str] | None = None,
         width: int = 760) -> str:
    """Horizontal stacked bars: one row per label, one segment per series (named by `names`)."""
    if not rows or not series:
        return ""
    colours = colours or {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    label_w, bar_h, gap, top = 200, 18, 6, 26
    legend_h = 20 * ((len(series) + 1) // 2)
    height = top + len(rows) * (bar_h + gap) + legend_h + 10
    scale = max((sum(v.get(s, 0) for s in series) for _, v in rows), default=0) or 1
    plot_w = width - label_w - 70
    out = _svg(width, height, title)
    out.append(f'<text x="0" y="16" font-size="15" font-weight="bold">{escape(title)}</text>')
    for index, (label, values) in enumerate(rows):
        y = top + index * (bar_h + gap)
        out.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="13" text-anchor="end">{escape(label)}</text>')
        x, total = float(label_w), 0.0
        for name in series:
            value = values.get(name, 0)
            if value <= 0:
                continue
            w = plot_w * value / scale
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colours[name]}">'
                       f"<title>{escape(label)}: {escape(names.get(name, name))} {escape(fmt(value))}</title></rect>")
            x += w
            total += value
        out.append(f'<text x="{x + 4:.1f}" y="{y + 13}" font-size="13">{escape(fmt(total))}</text>')
    y = top + len(rows) * (bar_h + gap) + 4
    for index, name in enumerate(series):
        lx, ly = (index % 2) * (width // 2), y + (index // 2) * 20
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colours[name]}"/>'
                   f'<text x="{lx + 16}" y="{ly + 11}" font-size="13">{escape(names.get(name, name))}</text>')
    out.append("</svg>")
    return "".join(out)


def progress(title: str, rows: Sequence[tuple[str, float]], width: int = 760) -> str:
    """One bar per target, filled to its percentage (capped at 100)."""
    if not rows:
        return ""
    label_w, bar_h, gap, top = 300, 20, 8, 26
    height = top + len(rows) * (bar_h + gap) + 6
    plot_w = width - label_w - 80
    out = _svg(width, height, title)
    out.append(f'<text x="0" y="16" font-size="15" font-weight="bold">{escape(title)}</text>')
    for index, (label, percent) in enumerate(rows):
        y = top + index * (bar_h + gap)
        share = max(0.0, min(100.0, float(percent)))
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="13" text-anchor="end">{escape(label)}</text>'
                   f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="{bar_h}" fill="#e6e6e6"/>'
                   f'<rect x="{label_w}" y="{y}" width="{plot_w * share / 100:.1f}" height="{bar_h}" fill="#1f5f8b"/>'
                   f'<text x="{label_w + plot_w + 6}" y="{y + 14}" font-size="13">{percent:.2f} %</text>')
    out.append("</svg>")
    return "".join(out)


def timeline(title: str, buckets: Sequence[tuple[str, Mapping[str, int]]], series: Sequence[str],
             names: Mapping[str, str], colours: Mapping[str, str], width: int = 760) -> str:
    """Columns over time: one per bucket (day, week or month, labelled), stacked by series."""
    if not buckets:
        return ""
    left, top, plot_h, bottom = 44, 28, 160, 52
    legend_y = top + plot_h + bottom - 14
    height = legend_y + 20
    plot_w = width - left - 10
    step = plot_w / len(buckets)
    bar_w = max(1.0, step * 0.8)
    scale = max((sum(v.values()) for _, v in buckets), default=0) or 1
    out = _svg(width, height, title)
    out.append(f'<text x="0" y="16" font-size="15" font-weight="bold">{escape(title)}</text>')
    for tick in (0, scale / 2, scale):
        y = top + plot_h - plot_h * tick / scale
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick:.0f}</text>')
    every = max(1, len(buckets) // 8)
    for index, (label, values) in enumerate(buckets):
        x = left + index * step + (step - bar_w) / 2
        y = float(top + plot_h)
        for name in series:
            value = values.get(name, 0)
            if value <= 0:
                continue
            h = plot_h * value / scale
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colours[name]}">'
                       f"<title>{escape(label)}: {escape(names.get(name, name))} {value}</title></rect>")
        if index % every == 0:
            out.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" font-size="11" '
                       f'text-anchor="middle">{escape(label)}</text>')
    for index, name in enumerate(series):
        lx = left + index * 150
        out.append(f'<rect x="{lx}" y="{legend_y - 10}" width="12" height="12" fill="{colours[name]}"/>'
                   f'<text x="{lx + 16}" y="{legend_y}" font-size="13">{escape(names.get(name, name))}</text>')
    out.append("</svg>")
    return "".join(out)
