"""Static SVG charts for the offline report: no JavaScript, no network, printable.

Every chart has a title, axis labels with units, and returns the numbers it plotted (rows for the CSV beside it).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d", "#bab0ac")
W, H = 720, 360
M = {"l": 160, "r": 24, "t": 48, "b": 56}


@dataclass
class Chart:
    """An SVG chart and the rows of numbers it shows (first row = header)."""

    id: str
    title: str
    svg: str
    rows: list[list] = field(default_factory=list)


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.2f}G"
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    if a >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.3g}"


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def _frame(cid: str, title: str, xlabel: str, ylabel: str, body: str, w: int = W, h: int = H) -> str:
    return (
        f'<svg id="{_esc(cid)}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" role="img" aria-label="{_esc(title)}">'
        f"<title>{_esc(title)}</title>"
        f'<text x="{w / 2}" y="22" text-anchor="middle" class="ct">{_esc(title)}</text>'
        f'<text x="{M["l"] + (w - M["l"] - M["r"]) / 2}" y="{h - 8}" text-anchor="middle" class="al">'
        f"{_esc(xlabel)}</text>"
        f'<text transform="translate(14,{M["t"] + (h - M["t"] - M["b"]) / 2}) rotate(-90)" text-anchor="middle" '
        f'class="al">{_esc(ylabel)}</text>{body}</svg>'
    )


def _x_axis(x0: float, x1: float, y: float, vmax: float, vmin: float = 0.0, ticks: int = 5) -> str:
    out = [f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" class="ax"/>']
    for i in range(ticks + 1):
        v = vmin + (vmax - vmin) * i / ticks
        x = x0 + (x1 - x0) * i / ticks
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" class="ax"/>')
        out.append(f'<text x="{x:.1f}" y="{y + 16}" text-anchor="middle" class="tk">{_fmt(v)}</text>')
    return "".join(out)


def _y_axis(x: float, y0: float, y1: float, vmax: float, vmin: float = 0.0, ticks: int = 5) -> str:
    out = [f'<line x1="{x}" y1="{y0}" x2="{x}" y2="{y1}" class="ax"/>']
    for i in range(ticks + 1):
        v = vmin + (vmax - vmin) * i / ticks
        y = y0 - (y0 - y1) * i / ticks
        out.append(f'<line x1="{x - 4}" y1="{y:.1f}" x2="{x}" y2="{y:.1f}" class="ax"/>')
        out.append(f'<text x="{x - 6}" y="{y + 4:.1f}" text-anchor="end" class="tk">{_fmt(v)}</text>')
    return "".join(out)


def hbar(
    cid: str,
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    xlabel: str,
    ylabel: str = "",
    ref: float | None = None,
    ref_label: str = "",
) -> Chart:
    """Horizontal (grouped) bars: one row per label, one bar per series; optional vertical reference line."""
    labels = [lab if len(str(lab)) <= 24 else "…" + str(lab)[-23:] for lab in labels]
    n, k = len(labels), max(1, len(series))
    row_h = max(14, min(28, 12 * k + 6))
    h = M["t"] + M["b"] + n * row_h + 10
    x0, x1 = M["l"], W - M["r"]
    vals = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    vmax = _nice_max(max(vals + [ref or 0, 0]))
    vmin = -_nice_max(-min(vals)) if vals and min(vals) < 0 else 0.0
    sx = lambda v: x0 + (x1 - x0) * (v - vmin) / (vmax - vmin)  # noqa: E731
    body = [_x_axis(x0, x1, h - M["b"], vmax, vmin)]
    bh = (row_h - 4) / k
    for i, lab in enumerate(labels):
        y = M["t"] + i * row_h
        body.append(f'<text x="{x0 - 6}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end" class="tk">{_esc(lab)}</text>')
        for j, (name, s) in enumerate(series.items()):
            v = s[i]
            if v is None or not math.isfinite(v):
                continue
            xa, xb = sorted((sx(0.0), sx(v)))
            body.append(
                f'<rect x="{xa:.1f}" y="{y + 2 + j * bh:.1f}" width="{xb - xa:.1f}" height="{bh:.1f}" '
                f'fill="{PALETTE[j % 9]}">'
                f"<title>{_esc(lab)} · {_esc(name)}: {_fmt(v)}</title></rect>"
            )
    if ref is not None:
        xr = sx(ref)
        body.append(f'<line x1="{xr:.1f}" y1="{M["t"]}" x2="{xr:.1f}" y2="{h - M["b"]}" class="ref"/>')
        body.append(f'<text x="{xr + 3:.1f}" y="{M["t"] - 4}" class="tk">{_esc(ref_label)}</text>')
    body.append(_legend(list(series), x0, 28) if k > 1 else "")
    rows = [["label", *series]] + [[lab, *(s[i] for s in series.values())] for i, lab in enumerate(labels)]
    return Chart(cid, title, _frame(cid, title, xlabel, ylabel, "".join(body), h=h), rows)


def _legend(names: list[str], x: float, y: float) -> str:
    """A one-row legend starting at (x, y), under the title."""
    out = []
    for j, name in enumerate(names):
        out.append(f'<rect x="{x:.0f}" y="{y}" width="10" height="10" fill="{PALETTE[j % 9]}"/>')
        out.append(f'<text x="{x + 14:.0f}" y="{y + 9}" class="tk">{_esc(name)}</text>')
        x += 24 + 6.2 * len(str(name))
    return "".join(out)


def histogram(
    cid: str,
    title: str,
    hist: Sequence[float],
    bin_edges: Sequence[float],
    xlabel: str,
    ylabel: str = "documents",
    threshold: float | None = None,
    threshold_label: str = "threshold",
) -> Chart:
    """Histogram from precomputed ``{hist, bin_edges}`` with an optional threshold line."""
    x0, x1, y0, y1 = M["l"], W - M["r"], H - M["b"], M["t"]
    lo, hi = float(bin_edges[0]), float(bin_edges[-1])
    span = (hi - lo) or 1.0
    vmax = _nice_max(max(list(hist) + [0]))
    body = [_x_axis(x0, x1, y0, hi, lo), _y_axis(x0, y0, y1, vmax)]
    for c, a, b in zip(hist, bin_edges[:-1], bin_edges[1:], strict=True):
        xa, xb = x0 + (x1 - x0) * (a - lo) / span, x0 + (x1 - x0) * (b - lo) / span
        hgt = (y0 - y1) * c / vmax
        body.append(
            f'<rect x="{xa:.1f}" y="{y0 - hgt:.1f}" width="{max(xb - xa - 1, 0.5):.1f}" height="{hgt:.1f}" '
            f'fill="{PALETTE[0]}"><title>[{_fmt(a)}, {_fmt(b)}): {_fmt(c)}</title></rect>'
        )
    if threshold is not None and lo <= threshold <= hi:
        xt = x0 + (x1 - x0) * (threshold - lo) / span
        body.append(f'<line x1="{xt:.1f}" y1="{y1}" x2="{xt:.1f}" y2="{y0}" class="ref"/>')
        body.append(
            f'<text x="{xt + 3:.1f}" y="{y1 + 10}" class="tk">{_esc(threshold_label)} {_fmt(threshold)}</text>'
        )
    rows = [["bin_start", "bin_end", "count"]] + [
        [a, b, c] for c, a, b in zip(hist, bin_edges[:-1], bin_edges[1:], strict=True)
    ]
    return Chart(cid, title, _frame(cid, title, xlabel, ylabel, "".join(body)), rows)


def heatmap(
    cid: str,
    title: str,
    rows_l: Sequence[str],
    cols_l: Sequence[str],
    values: Sequence[Sequence[float]],
    xlabel: str,
    ylabel: str,
    unit: str = "%",
) -> Chart:
    """A heat map (e.g. drop rate per rule × language); values in [0, 1] are shown as percentages."""
    nr, nc = len(rows_l), len(cols_l)
    cw = max(18, min(60, (W - M["l"] - M["r"]) / max(nc, 1)))
    ch = 18
    w = int(M["l"] + M["r"] + cw * nc)
    head = 14 + 5.5 * max((len(str(c)) for c in cols_l), default=2)  # room for the slanted column labels
    h = int(M["t"] + M["b"] + head + ch * nr)
    body = []
    for j, c in enumerate(cols_l):
        x, y = M["l"] + j * cw + cw / 2, M["t"] + head - 4
        body.append(f'<text transform="translate({x:.1f},{y:.1f}) rotate(-50)" class="tk">{_esc(c)}</text>')
    for i, r in enumerate(rows_l):
        y = M["t"] + head + i * ch
        body.append(f'<text x="{M["l"] - 6}" y="{y + 13}" text-anchor="end" class="tk">{_esc(r)}</text>')
        for j, _c in enumerate(cols_l):
            v = values[i][j]
            if v is None or not math.isfinite(v):
                fill, label = "#eee", "–"
            else:
                t = max(0.0, min(1.0, v))
                fill = f"rgb({255 - int(40 * t)},{255 - int(170 * t)},{255 - int(170 * t)})"
                label = f"{100 * v:.0f}" if unit == "%" else _fmt(v)
            x = M["l"] + j * cw
            body.append(
                f'<rect x="{x:.1f}" y="{y}" width="{cw - 1:.1f}" height="{ch - 1}" fill="{fill}">'
                f"<title>{_esc(r)} · {_esc(cols_l[j])}: {label}{unit}</title></rect>"
                f'<text x="{x + cw / 2:.1f}" y="{y + 13}" text-anchor="middle" class="hv">{label}</text>'
            )
    out_rows = [["row", *cols_l]] + [[r, *values[i]] for i, r in enumerate(rows_l)]
    return Chart(cid, title, _frame(cid, title, xlabel, ylabel, "".join(body), w=max(w, 360), h=h), out_rows)


def lines(
    cid: str,
    title: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    points: bool = False,
) -> Chart:
    """Line chart (CDFs, cost–quality curves): series name -> (xs, ys)."""
    x0, x1, y0, y1 = M["l"], W - M["r"], H - M["b"], M["t"]
    xs_all = [x for xs, _ in series.values() for x in xs] or [0, 1]
    ys_all = [y for _, ys in series.values() for y in ys] or [0, 1]
    xmin, xmax = min(0.0, min(xs_all)), _nice_max(max(xs_all))
    ymin, ymax = min(0.0, min(ys_all)), _nice_max(max(ys_all))
    sx = lambda v: x0 + (x1 - x0) * (v - xmin) / ((xmax - xmin) or 1)  # noqa: E731
    sy = lambda v: y0 - (y0 - y1) * (v - ymin) / ((ymax - ymin) or 1)  # noqa: E731
    body = [_x_axis(x0, x1, y0, xmax, xmin), _y_axis(x0, y0, y1, ymax, ymin)]
    rows = [["series", "x", "y"]]
    for j, (name, (xs, ys)) in enumerate(series.items()):
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True))
        body.append(f'<polyline points="{pts}" fill="none" stroke="{PALETTE[j % 9]}" stroke-width="2"/>')
        if points:
            body.extend(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{PALETTE[j % 9]}"/>'
                for x, y in zip(xs, ys, strict=True)
            )
        rows.extend([name, x, y] for x, y in zip(xs, ys, strict=True))
    body.append(_legend(list(series), x0, 28))
    return Chart(cid, title, _frame(cid, title, xlabel, ylabel, "".join(body)), rows)


def cdf_series(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Empirical CDF points (sorted values, cumulative share)."""
    v = sorted(x for x in values if x is not None and math.isfinite(x))
    n = len(v)
    return v, [(i + 1) / n for i in range(n)]


def waterfall(
    cid: str,
    title: str,
    steps: Sequence[tuple[str, float]],
    xlabel: str,
    start_label: str = "input",
    end_label: str = "kept",
) -> Chart:
    """Horizontal waterfall: the input total, then what each step removes, then what is left."""
    total = steps[0][1] if steps else 0
    labels, bars, left = [start_label], [(0.0, total)], total
    for name, removed in steps[1:]:
        labels.append(name)
        bars.append((left - removed, left))
        left -= removed
    labels.append(end_label)
    bars.append((0.0, left))
    n = len(labels)
    row_h = 20
    h = M["t"] + M["b"] + n * row_h + 10
    x0, x1 = M["l"], W - M["r"]
    vmax = _nice_max(total)
    body = [_x_axis(x0, x1, h - M["b"], vmax)]
    for i, (lab, (a, b)) in enumerate(zip(labels, bars, strict=True)):
        y = M["t"] + i * row_h
        color = PALETTE[0] if i in (0, n - 1) else PALETTE[3]
        xa, xb = x0 + (x1 - x0) * a / vmax, x0 + (x1 - x0) * b / vmax
        body.append(f'<text x="{x0 - 6}" y="{y + 14}" text-anchor="end" class="tk">{_esc(lab)}</text>')
        body.append(
            f'<rect x="{xa:.1f}" y="{y + 2}" width="{max(xb - xa, 0.5):.1f}" height="{row_h - 4}" fill="{color}">'
            f"<title>{_esc(lab)}: {_fmt(b - a)}</title></rect>"
            f'<text x="{xb + 4:.1f}" y="{y + 14}" class="tk">{_fmt(b - a)}</text>'
        )
    rows = [["step", "amount"]] + [[lab, b - a] for lab, (a, b) in zip(labels, bars, strict=True)]
    return Chart(cid, title, _frame(cid, title, xlabel, "", "".join(body), h=h), rows)
