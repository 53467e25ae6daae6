"""A self-contained HTML evaluation report: inline SVG plots, no scripts, nothing fetched."""

from __future__ import annotations

import html
from typing import Any

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .6rem;border:1px solid #ddd;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1.5rem}.plot{flex:0 0 auto}
.caption{font-size:.85rem;color:#555;max-width:420px}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def confusion_svg(labels: list[str], matrix: list[list[int]]) -> str:
    """Rows are true labels, columns predicted; each row shaded by its own share."""
    n = len(labels)
    cell, left, top = 44, 110, 110
    size_w, size_h = left + n * cell + 10, top + n * cell + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size_w}" height="{size_h}" '
             f'font-size="11" role="img" aria-label="confusion matrix">']
    for j, lab in enumerate(labels):
        x = left + j * cell + cell / 2
        parts.append(f'<text x="{x}" y="{top - 6}" transform="rotate(-45 {x} {top - 6})">'
                     f'{_esc(lab)}</text>')
    for i, lab in enumerate(labels):
        total = sum(matrix[i]) or 1
        y = top + i * cell
        parts.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end">'
                     f'{_esc(lab)}</text>')
        for j, count in enumerate(matrix[i]):
            share = count / total
            hue = 210 if i == j else 5
            light = 97 - 55 * share
            parts.append(f'<rect x="{left + j * cell}" y="{y}" width="{cell}" height="{cell}" '
                         f'fill="hsl({hue},70%,{light:.0f}%)" stroke="#fff"/>')
            colour = "#fff" if light < 60 else "#222"
            parts.append(f'<text x="{left + j * cell + cell / 2}" y="{y + cell / 2 + 4}" '
                         f'text-anchor="middle" fill="{colour}">{count}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _axes(width: int, height: int, pad: int, xlabel: str, ylabel: str, y_min: float) -> list[str]:
    plot_w, plot_h = width - 2 * pad, height - 2 * pad
    parts = [f'<rect x="{pad}" y="{pad}" width="{plot_w}" height="{plot_h}" fill="none" '
             'stroke="#888"/>']
    for k in range(6):
        frac = k / 5
        x = pad + frac * plot_w
        y = pad + plot_h - frac * plot_h
        yv = y_min + frac * (1 - y_min)
        parts.append(f'<text x="{x}" y="{pad + plot_h + 14}" text-anchor="middle">'
                     f'{frac:.1f}</text>')
        parts.append(f'<text x="{pad - 4}" y="{y + 4}" text-anchor="end">{yv:.2f}</text>')
    parts.append(f'<text x="{pad + plot_w / 2}" y="{height - 4}" text-anchor="middle">'
                 f'{_esc(xlabel)}</text>')
    mid = pad + plot_h / 2
    parts.append(f'<text x="12" y="{mid}" transform="rotate(-90 12 {mid})" '
                 f'text-anchor="middle">{_esc(ylabel)}</text>')
    return parts


def reliability_svg(bins: list[dict[str, float]]) -> str:
    """Bars at each bin's accuracy against the diagonal of perfect calibration."""
    width, height, pad = 360, 300, 40
    plot_w, plot_h = width - 2 * pad, height - 2 * pad
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-size="10" role="img" aria-label="reliability diagram">']
    parts += _axes(width, height, pad, "confidence", "accuracy", 0.0)
    parts.append(f'<line x1="{pad}" y1="{pad + plot_h}" x2="{pad + plot_w}" y2="{pad}" '
                 'stroke="#999" stroke-dasharray="4"/>')
    for b in bins:
        x = pad + b["low"] * plot_w
        w = (b["high"] - b["low"]) * plot_w
        h = b["accuracy"] * plot_h
        parts.append(f'<rect x="{x:.1f}" y="{pad + plot_h - h:.1f}" width="{w:.1f}" '
                     f'height="{h:.1f}" fill="hsl(210,60%,55%)" fill-opacity=".75" stroke="#fff">'
                     f'<title>{b["count"]} predictions, confidence {b["confidence"]:.2f}, '
                     f'accuracy {b["accuracy"]:.2f}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def risk_coverage_svg(points: list[dict[str, float]]) -> str:
    """Accuracy of the most confident predictions as coverage grows."""
    width, height, pad = 360, 300, 40
    plot_w, plot_h = width - 2 * pad, height - 2 * pad
    y_min = min(0.5, min(p["accuracy"] for p in points) - 0.05) if points else 0.5
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-size="10" role="img" aria-label="risk-coverage curve">']
    parts += _axes(width, height, pad, "coverage", "accuracy", y_min)
    coords = [(pad + p["coverage"] * plot_w,
               pad + plot_h - (p["accuracy"] - y_min) / (1 - y_min) * plot_h) for p in points]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts.append(f'<polyline points="{path}" fill="none" stroke="hsl(150,60%,35%)" '
                 'stroke-width="2"/>')
    for (x, y), p in zip(coords, points, strict=True):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="hsl(150,60%,35%)">'
                     f'<title>coverage {p["coverage"]:.2f}: accuracy {p["accuracy"]:.3f}'
                     f'</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def render_report(result: dict[str, Any]) -> str:
    """The whole report for `ticketclf evaluate` results (see cli.evaluate)."""
    out = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>ticketclf evaluation</title><style>{_CSS}</style></head><body>",
           "<h1>ticketclf evaluation</h1>",
           f"<p>model {_esc(result['model_version'])} on {_esc(result['data'])} "
           f"({result['rows']:,} rows)</p>"]
    for head, m in result["heads"].items():
        out.append(f"<h2>{_esc(head)}</h2>")
        out.append(_table(["n", "accuracy", "macro-F1", "ECE"],
                          [[m["n"], f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}",
                            f"{m['ece']:.3f}"]]))
        out.append("<div class='plots'>")
        out.append("<div class='plot'>" + confusion_svg(m["labels"], m["confusion"])
                   + "<p class='caption'>Confusion matrix: rows are the true labels, columns the "
                   "predicted ones; blue diagonal is right, red is wrong.</p></div>")
        out.append("<div class='plot'>" + reliability_svg(m["reliability"])
                   + "<p class='caption'>Reliability: bars on the dashed diagonal mean the "
                   "confidence can be taken at its word.</p></div>")
        out.append("<div class='plot'>" + risk_coverage_svg(m["risk_coverage_curve"])
                   + "<p class='caption'>Risk–coverage: accuracy of the most confident "
                   "predictions; the rest would go to the LLM or a person.</p></div>")
        out.append("</div>")
        out.append(_table(["label", "precision", "recall", "F1", "support"],
                          [[lab, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}",
                            s["support"]] for lab, s in m["per_class"].items()]))
        out.append(_table(["coverage", "accuracy", "threshold"],
                          [[f"{r['coverage']:.0%}", f"{r['accuracy']:.3f}",
                            f"{r['threshold']:.3f}"] for r in m["risk_coverage"]]))
    out.append("</body></html>")
    return "\n".join(out)
