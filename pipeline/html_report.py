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
from datetime import datetime, timedelta
from importlib import resources
from string import Template
from typing import Any, Final

from mtalens.pipeline import timeline
from mtalens.pipeline.diagnose import Context, Finding, run_query, summarize
from mtalens.pipeline.render import cell_text
from mtalens.pipeline.reports import report
from mtalens.pipeline.timeline import Axis, bucket_name, label_width, nice_max, ticks

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


def _empty_chart(chart_id: str, note: str) -> str:
    return (
        f'<svg class="chart" id="{esc(chart_id)}" viewBox="0 0 900 60" role="img">'
        f'<text x="10" y="35">{esc(note)}</text></svg>'
    )


# the volume chart's series, bottom to top: report per_hour columns and their colours
VOLUME: Final = (("delivered", COLORS["sent"]), ("deferred", COLORS["deferred"]),
                 ("bounced", COLORS["bounced"]), ("rejected", "#6e40c9"))  # fmt: skip
CHART_W: Final = 900
FONT: Final = 11.0  # svg.chart text in the template


def _time_axis(parts: list[str], axis: Axis, left: float, plot_w: float, y: float) -> None:
    """Tick marks and labels at round times (timeline.ticks: they cannot overlap)."""
    for x, label in ticks(axis, plot_w, FONT):
        half = label_width(label, FONT) / 2
        if left + x - half < 0 or left + x + half > CHART_W:
            continue  # it would be cut at the drawing's edge
        parts.append(
            f'<line class="tick" x1="{left + x:.1f}" x2="{left + x:.1f}" y1="{y}" y2="{y + 4}" '
            f'stroke="#57606a"/><text class="tick-label" x="{left + x:.1f}" y="{y + 16}" '
            f'text-anchor="middle">{esc(label)}</text>'
        )


def _y_grid(parts: list[str], vmax: float, left: float, top: float, plot_h: float,
            unit: str = "") -> None:  # fmt: skip
    for i in range(5):
        v = vmax * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{CHART_W - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d8dee4"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(_num(v) + unit)}</text>'
        )


def chart_volume(axis: Axis, rows: Sequence[Mapping[str, Any]]) -> str:
    """Stacked bars per bucket on a real time axis: delivery attempts delivered, deferred and
    bounced, and rejected connections' requests; a bucket without data is a gap."""
    if not rows:
        return _empty_chart("chart-outcomes", "No deliveries or rejections in this range.")
    h, left, bottom, top = 280, 50, 40, 10
    plot_w, plot_h = CHART_W - left - 10, h - bottom - top
    vmax = nice_max(max(sum(int(r[k] or 0) for k, _ in VOLUME) for r in rows))
    bw = plot_w * axis.bucket / axis.span
    name = bucket_name(axis.bucket)
    parts = [f'<svg class="chart" id="chart-outcomes" viewBox="0 0 {CHART_W} {h}" role="img" '
             f'data-bucket-seconds="{axis.bucket}">',
             f"<title>{esc(f'Delivery attempts and rejections per {name}')}</title>"]  # fmt: skip
    _y_grid(parts, vmax, left, top, plot_h)
    for r in rows:
        at: datetime = r["hour"]
        x = left + axis.x(at, plot_w)
        y = float(top + plot_h)
        for k, colour in VOLUME:
            n = int(r[k] or 0)
            if n == 0:
                continue
            bh = plot_h * n / vmax
            y -= bh
            parts.append(
                f'<rect class="bar bar-{k}" x="{x + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(bw - 1, 0.8):.1f}" height="{bh:.1f}" fill="{colour}">'
                f"<title>{esc(f'{at:%Y-%m-%d %H:%M}')} UTC: {n} {esc(k)}</title></rect>"
            )
    _time_axis(parts, axis, left, plot_w, top + plot_h)
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{c}"></i>{esc(k)}</span>' for k, c in VOLUME)
    return (
        "".join(parts) + f'<p class="legend">{legend} <span class="meta">one bar per {esc(name)}'
        "; empty: nothing logged then</span></p>"
    )


def chart_delay_trend(axis: Axis, rows: Sequence[Mapping[str, Any]]) -> str:
    """p50, p90 and p99 of the total delay of delivered mail per bucket: lines broken where a
    bucket has no deliveries."""
    rows = [r for r in rows if r["count"]]
    if not rows:
        return _empty_chart("chart-delay-trend", "No successful deliveries with delays.")
    h, left, bottom, top = 240, 60, 40, 10
    plot_w, plot_h = CHART_W - left - 10, h - bottom - top
    series = (("delay_p50", "p50", "#56b4e9"), ("delay_p90", "p90", "#0072b2"),
              ("delay_p99", "p99", "#d55e00"))  # fmt: skip
    vmax = nice_max(max(float(r["delay_p99"] or 0.0) for r in rows))
    half = axis.bucket / 2
    parts = [f'<svg class="chart" id="chart-delay-trend" viewBox="0 0 {CHART_W} {h}" role="img">',
             f"<title>{esc(f'Delivery delay percentiles per {bucket_name(axis.bucket)}')}</title>"]  # fmt: skip
    _y_grid(parts, vmax, left, top, plot_h, " s")
    # runs of adjacent buckets: one polyline each, so a gap is a gap
    runs: list[list[Mapping[str, Any]]] = []
    for r in rows:
        if runs and (r["key"] - runs[-1][-1]["key"]).total_seconds() <= axis.bucket:
            runs[-1].append(r)
        else:
            runs.append([r])
    for col, label, colour in series:
        for run in runs:
            pts = [
                (left + axis.x(r["key"] + timedelta(seconds=half), plot_w),
                 top + plot_h - plot_h * float(r[col] or 0.0) / vmax)
                for r in run
            ]  # fmt: skip
            if len(pts) == 1:
                x, y = pts[0]
                parts.append(f'<circle class="pt pt-{label}" cx="{x:.1f}" cy="{y:.1f}" r="2.5" '
                             f'fill="{colour}"><title>{label}</title></circle>')  # fmt: skip
            else:
                line = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
                parts.append(f'<polyline class="line line-{label}" points="{line}" fill="none" '
                             f'stroke="{colour}" stroke-width="1.8"/>')  # fmt: skip
    _time_axis(parts, axis, left, plot_w, top + plot_h)
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{c}"></i>{esc(lab)}</span>'
                     for _, lab, c in series)  # fmt: skip
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def chart_delays(rows: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bars: p50 and p90 of each of the four delay stages, in seconds."""
    rows = [r for r in rows if r["n"]]
    if not rows:
        return _empty_chart("chart-delays", "No successful deliveries with delays in this range.")
    w, left, bar_h, gap = 900, 130, 14, 14
    h = 20 + len(rows) * (2 * bar_h + gap)
    vmax = nice_max(max(float(r["p90"] or 0.0) for r in rows))
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
    vmax = nice_max(max(sum(n for _, n in v) for v in by_dest.values()))
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
        "<tr>" + "".join(f"<td>{esc(cell_text(r[c]))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
        "</table></div>"
    )


def _template() -> Template:
    text = (
        resources.files("mtalens.pipeline")
        .joinpath("templates", "report.html")
        .read_text(encoding="utf-8")
    )
    return Template(text)


# the summary cards: (report totals field, label); the page's numbers are the report's
CARDS: Final = (
    ("received", "received"), ("received_distinct", "distinct messages"),
    ("delivered", "delivered"), ("deferred_messages", "deferred messages"),
    ("bounced", "bounced"), ("expired", "expired"), ("rejected", "rejected"),
    ("sasl_failures", "SASL failures"),
)  # fmt: skip
DESTINATION_COLUMNS: Final = ("domain", "delivered", "deferred", "bounced", "delivery_rate",
                              "p90_delay")  # fmt: skip


def cards_html(totals: Mapping[str, Any]) -> str:
    out = []
    for key, label in CARDS:
        v = totals.get(key)
        if v is None:
            continue
        out.append(f'<div class="card"><b data-total="{esc(key)}">{int(v):,}</b>'
                   f"<span>{esc(label)}</span></div>")  # fmt: skip
    return f'<div class="cards">{"".join(out)}</div>'


def build_report(
    ctx: Context, findings: Sequence[Finding], *, generated_at: datetime, top: int = 15
) -> str:
    """The whole page: the range and totals, the charts, top destinations, then the findings
    and the latest rejections and bounce reports. ``generated_at`` is passed in (no clock)."""
    counts = {
        s: sum(1 for f in findings if f.severity == s) for s in ("critical", "warning", "notice")
    }
    summary = " ".join(
        f'<a href="#findings"><span class="sev {esc(k)}">{esc(k)}</span> '
        f'<span data-findings="{esc(k)}">{v}</span></a>'
        for k, v in counts.items()
    )
    totals = summarize(ctx)
    rate = totals.delivery_rate
    summary += (
        f" &middot; recipients {totals.recipients:,} in {totals.messages:,} messages: delivered "
        f"{totals.delivered:,}"
        + (f" ({rate:.1%})" if rate is not None else "")
        + f", bounced {totals.bounced:,}, expired {totals.expired:,}, still deferred "
        f"{totals.deferred_now:,}"
    )
    sections = {t.name: t for t in report(ctx.store, since=ctx.since, until=ctx.until, top=top,
                                          sections=("totals", "domains"))}  # fmt: skip
    report_totals = sections["totals"].records()[0]
    # the data's range (the requested one is often "everything": 1970 .. 9999)
    span = timeline.data_range(ctx.store, since=ctx.since, until=ctx.until)
    first, last = span if span is not None else (ctx.since, ctx.until)
    bucket = timeline.choose_bucket(first, last)
    if span is None:
        volume = chart_volume(Axis.over(first, first, bucket), [])
        trend = chart_delay_trend(Axis.over(first, first, bucket), [])
    else:
        axis = Axis.over(first, last, bucket)
        volume = chart_volume(axis, timeline.volume(ctx.store, since=ctx.since, until=ctx.until,
                                                    bucket=bucket))  # fmt: skip
        trend = chart_delay_trend(axis, timeline.delays(ctx.store, since=ctx.since,
                                                        until=ctx.until, bucket=bucket))  # fmt: skip
    destinations = [{c: r[c] for c in DESTINATION_COLUMNS} for r in sections["domains"].records()]
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
        cards=cards_html(report_totals),
        bucket=esc(bucket_name(bucket)),
        findings=finding_block,
        chart_outcomes=volume,
        chart_delay_trend=trend,
        chart_delays=chart_delays(run_query(ctx, "delay_stages")),
        chart_reasons=chart_reasons(run_query(ctx, "bounce_reasons_by_destination", extra)),
        destinations=table_html(destinations, "No deliveries."),
        rejections=table_html(run_query(ctx, "recent_rejections", extra), "No rejections."),
        bounce_reports=table_html(
            run_query(ctx, "recent_bounce_reports", extra), "No bounce reports in the store."
        ),
    )
