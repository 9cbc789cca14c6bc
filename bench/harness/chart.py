"""A hand-written SVG chart of latency percentiles: one line per target,
percentiles on the x axis, latency on a log-scaled y axis. No plotting
library: the chart must cost nothing to build."""

import math
from html import escape

COLORS = {"direct": "#4d4d4d", "sidecar": "#1f77b4", "haproxy": "#ff7f0e", "envoy": "#d62728"}
W, H = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 80, 150, 50, 60


def _ticks(lo, hi):
    """1-2-5 ticks between lo and hi (µs)."""
    out = []
    e = math.floor(math.log10(lo))
    while 10**e <= hi * 10:
        for m in (1, 2, 5):
            v = m * 10**e
            if lo <= v <= hi:
                out.append(v)
        e += 1
    return out


def _label_us(v):
    if v >= 1000:
        return f"{v / 1000:g} ms"
    return f"{v:g} µs"


def latency_svg(series, *, title, subtitle=""):
    """series: {target: [(percentile_label, latency_us), ...]}, same labels
    in the same order for every target."""
    targets = [t for t in ("direct", "sidecar", "haproxy", "envoy") if series.get(t)] + [
        t for t in series if t not in COLORS and series[t]
    ]
    if not targets:
        return _empty(title)
    labels = [p for p, _ in series[targets[0]]]
    values = [v for t in targets for _, v in series[t] if v and v > 0]
    if not values:
        return _empty(title)
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo * 10
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(i):
        return LEFT + (pw * i / max(1, len(labels) - 1))

    def y(v):
        return TOP + ph * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT}" y="38" fill="#555">{escape(subtitle)}</text>',
    ]
    for v in _ticks(lo, hi):
        yy = y(v)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#333">{_label_us(v)}</text>')
    for i, p in enumerate(labels):
        xx = x(i)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{xx:.1f}" y="{TOP + ph + 18}" text-anchor="middle">{escape(p)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    out.append(
        f'<text x="{LEFT + pw / 2}" y="{H - 14}" text-anchor="middle" fill="#333">percentile</text>'
        f'<text transform="translate(18 {TOP + ph / 2}) rotate(-90)" text-anchor="middle" fill="#333">'
        "latency (log scale)</text>"
    )
    for k, t in enumerate(targets):
        color = COLORS.get(t, "#2ca02c")
        pts = [(x(i), y(v)) for i, (_, v) in enumerate(series[t]) if v and v > 0]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        for (px, py), (p, v) in zip(pts, [pv for pv in series[t] if pv[1] and pv[1] > 0]):
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{color}">'
                f"<title>{escape(t)} {escape(p)}: {v:.0f} µs</title></circle>"
            )
        ly = TOP + 10 + k * 22
        lx = LEFT + pw + 18
        out.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/>')
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{escape(t)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _empty(title):
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="80" font-family="sans-serif">'
        f'<text x="10" y="40">{escape(title)}: no data</text></svg>\n'
    )
