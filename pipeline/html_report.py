"""The diagnose report as one self-contained HTML file: findings, three inline SVG charts
(delivery outcomes over time, delays by stage, top bounce reasons by destination) and the latest
rejections and bounce reports.

Log lines and bounces carry attacker-controlled text (HELO names, addresses, subjects, remote
replies). Every value taken from the store goes through ``html.escape`` (quotes included) before
it reaches the page, in element text and in attributes alike; the page has no script and a
Content-Security-Policy that forbids any, and it loads nothing from the network.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib import resources
from string import Template
from typing import Any, Final

from mtalens.pipeline.diagnose import Context, Finding, run_query, summarize

COLORS: Final = {"sent": "#2da44e", "deferred": "#d4a72c", "bounced": "#cf222e", "other": "#8c959f"}
# Reasons get colours in order of appearance (Okabe-Ito palette, readable for colour blindness).
PALETTE: Final = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#000000",
    "#999999",
    "#7f3c8d",
)
# the reason chart's colours: the palette without its grey, which "other reasons" would repeat
REASON_COLOURS: Final = tuple(c for c in PALETTE if c != "#999999")
OTHER_REASONS: Final = "other reasons"


def esc(value: object) -> str:
    """Text for HTML element content or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** (len(str(int(v))) - 1) if v >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * mag:
            return float(step * mag)
    return float(10 * mag)


def _empty_chart(chart_id: str, note: str) -> str:
    return (
        f'<svg class="chart" id="{esc(chart_id)}" viewBox="0 0 900 60" role="img">'
        f'<text x="10" y="35">{esc(note)}</text></svg>'
    )


def chart_outcomes(rows: Sequence[Mapping[str, Any]]) -> str:
    """Stacked bars per hour: sent, deferred, bounced, other."""
    if not rows:
        return _empty_chart("chart-outcomes", "No deliveries in this range.")
    w, h, left, bottom, top = 900, 280, 50, 40, 10
    plot_w, plot_h = w - left - 10, h - bottom - top
    keys = ("sent", "deferred", "bounced", "other")
    vmax = _nice_max(max(sum(int(r[k] or 0) for k in keys) for r in rows))
    bw = plot_w / len(rows)
    parts = [f'<svg class="chart" id="chart-outcomes" viewBox="0 0 {w} {h}" role="img">']
    parts.append(f"<title>{esc('Delivery attempts per hour by status')}</title>")
    for i in range(5):  # y grid
        v = vmax * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{w - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d8dee4"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(_num(v))}</text>'
        )
    label_every = max(1, len(rows) // 12)
    for i, r in enumerate(rows):
        x = left + i * bw
        y = top + plot_h
        hour = r["hour"]
        label = hour.strftime("%m-%d %H:00") if isinstance(hour, datetime) else str(hour)
        for k in keys:
            n = int(r[k] or 0)
            if n == 0:
                continue
            bh = plot_h * n / vmax
            y -= bh
            parts.append(
                f'<rect class="bar bar-{k}" x="{x + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}"'
                f' height="{bh:.1f}" fill="{COLORS[k]}"><title>{esc(label)}: {n} {esc(k)}</title></rect>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{h - bottom + 16}" text-anchor="middle">{esc(label)}</text>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{c}"></i>{esc(k)}</span>' for k, c in COLORS.items()
    )
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def chart_delays(rows: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bars: p50 and p90 of each of the four delay stages, in seconds."""
    rows = [r for r in rows if r["n"]]
    if not rows:
        return _empty_chart("chart-delays", "No successful deliveries with delays in this range.")
    w, left, bar_h, gap = 900, 130, 14, 14
    h = 20 + len(rows) * (2 * bar_h + gap)
    vmax = _nice_max(max(float(r["p90"] or 0.0) for r in rows))
    plot_w = w - left - 80
    parts = [f'<svg class="chart" id="chart-delays" viewBox="0 0 {w} {h}" role="img">']
    parts.append(f"<title>{esc('p50 and p90 delay per stage, seconds')}</title>")
    y = 10.0
    for r in rows:
        parts.append(
            f'<text x="{left - 8}" y="{y + bar_h + 4:.1f}" text-anchor="end">{esc(r["stage"])}</text>'
        )
        for q, colour in (("p50", "#56b4e9"), ("p90", "#0072b2")):
            v = float(r[q] or 0.0)
            bw = max(plot_w * v / vmax, 1.0)
            parts.append(
                f'<rect class="bar bar-{q}" x="{left}" y="{y:.1f}" width="{bw:.1f}" height="{bar_h}"'
                f' fill="{colour}"><title>{esc(r["stage"])} {q}: {esc(_num(v))} s</title></rect>'
                f'<text x="{left + bw + 4:.1f}" y="{y + bar_h - 3:.1f}">{q} {esc(_num(v))} s</text>'
            )
            y += bar_h
        y += gap
    parts.append("</svg>")
    return "".join(parts)


def chart_reasons(rows: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal stacked bars: failed recipients per destination, one segment per reason."""
    if not rows:
        return _empty_chart("chart-reasons", "No failed recipients in this range.")
    # one colour per reason, never reused: the most frequent reasons get the palette's colours,
    # the rest are one grey "other reasons" segment
    totals: dict[str, int] = {}
    for r in rows:
        totals[str(r["reason"])] = totals.get(str(r["reason"]), 0) + int(r["count"])
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    colours: dict[str, str] = dict(zip(ranked, REASON_COLOURS, strict=False))
    if len(ranked) > len(REASON_COLOURS):
        colours[OTHER_REASONS] = COLORS["other"]
    by_dest: dict[str, list[tuple[str, int]]] = {}
    for r in rows:
        reason = str(r["reason"]) if str(r["reason"]) in colours else OTHER_REASONS
        segs = by_dest.setdefault(str(r["destination"]), [])
        if segs and segs[-1][0] == reason == OTHER_REASONS:
            segs[-1] = (reason, segs[-1][1] + int(r["count"]))
        else:
            segs.append((reason, int(r["count"])))
    dests = sorted(by_dest, key=lambda d: (-sum(n for _, n in by_dest[d]), d))
    w, left, bar_h, gap = 900, 180, 16, 8
    h = 20 + len(dests) * (bar_h + gap)
    vmax = _nice_max(max(sum(n for _, n in v) for v in by_dest.values()))
    plot_w = w - left - 40
    parts = [f'<svg class="chart" id="chart-reasons" viewBox="0 0 {w} {h}" role="img">']
    parts.append(f"<title>{esc('Failed recipients per destination and reason')}</title>")
    y = 10.0
    for d in dests:
        parts.append(
            f'<text x="{left - 8}" y="{y + bar_h - 4:.1f}" text-anchor="end">{esc(d)}</text>'
        )
        x = float(left)
        for reason, n in by_dest[d]:
            bw = plot_w * n / vmax
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bar_h}"'
                f' fill="{colours[reason]}"><title>{esc(d)}: {n} {esc(reason)}</title></rect>'
            )
            x += bw
        parts.append(
            f'<text x="{x + 4:.1f}" y="{y + bar_h - 4:.1f}">{sum(n for _, n in by_dest[d])}</text>'
        )
        y += bar_h + gap
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{c}"></i>{esc(k)}</span>' for k, c in colours.items()
    )
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def _fact_text(v: object) -> str:
    if isinstance(v, tuple):
        return ", ".join(map(str, v))
    return str(v)


def finding_html(f: Finding) -> str:
    ev = f.evidence
    items: list[tuple[str, str]] = [("count", str(ev.count))]
    if ev.first_seen and ev.last_seen:
        items.append(
            (
                "time span",
                f"{ev.first_seen:%Y-%m-%d %H:%M:%S} .. {ev.last_seen:%Y-%m-%d %H:%M:%S} UTC",
            )
        )
    if ev.destinations:
        items.append(("destinations", ", ".join(ev.destinations)))
    items.extend((k.replace("_", " "), _fact_text(v)) for k, v in ev.facts if v not in (None, ()))
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items)
    examples = "".join(f"<pre>{esc(x)}</pre>" for x in ev.examples)
    sev = esc(f.severity)
    return (
        f'<article class="finding {sev}" id="{esc("f-" + f.id)}">'
        f'<h3><span class="sev {sev}">{sev}</span> {esc(f.title)} <span class="fid">{esc(f.id)}</span></h3>'
        f"<dl>{dl}</dl>{examples}"
        f'<p class="remedy"><strong>Remedy:</strong> {esc(f.remedy)}</p></article>'
    )


def table_html(rows: Sequence[Mapping[str, Any]], empty: str) -> str:
    if not rows:
        return f"<p>{esc(empty)}</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc('' if r[c] is None else r[c])}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _template() -> Template:
    text = (
        resources.files("mtalens.pipeline")
        .joinpath("templates", "report.html")
        .read_text(encoding="utf-8")
    )
    return Template(text)


def build_report(
    ctx: Context, findings: Sequence[Finding], *, generated_at: datetime, top: int = 15
) -> str:
    """The whole page. ``generated_at`` is passed in (no clock here)."""
    counts = {
        s: sum(1 for f in findings if f.severity == s) for s in ("critical", "warning", "notice")
    }
    summary = " ".join(f'<span class="sev {esc(k)}">{esc(k)}</span> {v}' for k, v in counts.items())
    totals = summarize(ctx)
    rate = totals.delivery_rate
    summary += (
        f" &middot; recipients {totals.recipients:,} in {totals.messages:,} messages: delivered "
        f"{totals.delivered:,}"
        + (f" ({rate:.1%})" if rate is not None else "")
        + f", bounced {totals.bounced:,}, expired {totals.expired:,}, still deferred "
        f"{totals.deferred_now:,}"
    )
    # the data's range (the requested one is often "everything": 1970 .. 9999)
    first = totals.first or ctx.since
    last = totals.last or ctx.until
    if not findings:
        finding_block = "<p>No problems found in this time range.</p>"
    else:
        finding_block = "\n".join(finding_html(f) for f in findings)
    extra = {"top": top}
    return _template().substitute(
        store=esc(ctx.store.path),
        range=esc(f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC"),
        generated=esc(f"{generated_at:%Y-%m-%d %H:%M:%S} UTC"),
        summary=summary,
        findings=finding_block,
        chart_outcomes=chart_outcomes(run_query(ctx, "outcomes_by_hour")),
        chart_delays=chart_delays(run_query(ctx, "delay_stages")),
        chart_reasons=chart_reasons(run_query(ctx, "bounce_reasons_by_destination", extra)),
        rejections=table_html(run_query(ctx, "recent_rejections", extra), "No rejections."),
        bounce_reports=table_html(
            run_query(ctx, "recent_bounce_reports", extra), "No bounce reports in the store."
        ),
    )
