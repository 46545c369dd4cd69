"""The HTML diagnose report: self-contained, charts drawn, attacker-controlled text inert.

The browser part runs Debian's headless `chromium` (.ci/run installs it): it loads the report from
a file, dumps the DOM after load and saves a screenshot under test-artifacts/.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mtalens.pipeline import bounces
from mtalens.pipeline.diagnose import Context, diagnose
from mtalens.pipeline.html_report import CHART_W, FONT, build_report, chart_volume, esc
from mtalens.pipeline.ingest import LogIngestor
from mtalens.pipeline.reports import report
from mtalens.pipeline.store import Store
from mtalens.pipeline.timeline import CHAR_EM, Axis, choose_bucket
from mtalens.pipeline.timerange import EPOCH, FAR_FUTURE
from tests.conftest import need_binary

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "sample_logs" / "postfix" / "problems.log"
ARTIFACTS = ROOT / "test-artifacts"
NOW = datetime(2026, 12, 2, tzinfo=UTC)
TITLE = "mtalens diagnose report"

# Each payload would change document.title or plant a marker attribute if it ever ran.
HELO_PAYLOAD = "<script>document.title='pwned-helo'</script>"
REPLY_PAYLOAD = "<img src=x onerror=document.body.setAttribute('data-pwned','reply')>"
SUBJECT_PAYLOAD = "<script>document.title='pwned-subject'</script>"
ORIG_SUBJECT_PAYLOAD = "\"><svg onload=\"document.body.setAttribute('data-pwned','svg')\">"

EVIL_LOG = f"""\
Dec  1 07:00:00 mx1 postfix/smtpd[100]: connect from unknown[198.51.100.66]
Dec  1 07:00:01 mx1 postfix/smtpd[100]: NOQUEUE: reject: RCPT from unknown[198.51.100.66]: 554 5.7.1 <a@elsewhere.example>: Relay access denied; from=<x@y.example> to=<a@elsewhere.example> proto=ESMTP helo=<{HELO_PAYLOAD}>
Dec  1 07:00:02 mx1 postfix/smtpd[100]: disconnect from unknown[198.51.100.66] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4
Dec  1 07:05:00 mx1 postfix/pickup[101]: 7E1A2B3C4D: uid=1001 from=<news@example.net>
Dec  1 07:05:00 mx1 postfix/cleanup[102]: 7E1A2B3C4D: message-id=<evil-1@example.net>
Dec  1 07:05:00 mx1 postfix/qmgr[103]: 7E1A2B3C4D: from=<news@example.net>, size=1000, nrcpt=1 (queue active)
Dec  1 07:05:01 mx1 postfix/smtp[104]: 7E1A2B3C4D: to=<v@evil.example>, relay=mx.evil.example[203.0.113.9]:25, delay=1, delays=0.1/0.1/0.4/0.4, dsn=5.7.1, status=bounced (host mx.evil.example[203.0.113.9] said: 554 5.7.1 {REPLY_PAYLOAD} Client host [192.0.2.10] blocked using zen.spamhaus.org (in reply to RCPT TO command))
Dec  1 07:05:01 mx1 postfix/qmgr[103]: 7E1A2B3C4D: removed
"""

EVIL_BOUNCE = f"""\
Return-Path: <>
Date: Tue,  1 Dec 2026 07:10:02 +0000 (UTC)
From: MAILER-DAEMON@mx.evil.example (Mail Delivery System)
Subject: {SUBJECT_PAYLOAD}
To: news@example.net
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"
Message-Id: <evil-bounce-1@mx.evil.example>

--b1
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.evil.example

Final-Recipient: rfc822; w@evil.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <w@evil.example>: {REPLY_PAYLOAD} User unknown

--b1
Content-Type: text/rfc822-headers

Message-ID: <evil-1@example.net>
From: news@example.net
To: w@evil.example
Subject: {ORIG_SUBJECT_PAYLOAD}

--b1--
"""


@pytest.fixture(scope="module")
def report_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("html")
    (d / "evil.log").write_text(EVIL_LOG)
    (d / "evil.eml").write_text(EVIL_BOUNCE)
    with Store.open(d / "r.duckdb") as store:
        LogIngestor(store, tz=UTC, year=2026).run([PROBLEMS, d / "evil.log"])
        bounces.ingest(store, [d / "evil.eml"], now=lambda: NOW)
        # the planted text really is in the store, where the report reads it from
        helos = [r[0] for r in store.con.execute("SELECT helo FROM rejections").fetchall()]
        assert any("<script>" in (h or "") for h in helos)
        subjects = store.con.execute(
            "SELECT subject, original_subject FROM bounce_reports"
        ).fetchall()
        assert subjects == [(SUBJECT_PAYLOAD, ORIG_SUBJECT_PAYLOAD)]
    return d / "r.duckdb"


@pytest.fixture(scope="module")
def report_html(report_db: Path) -> str:
    with Store.open(report_db, read_only=True) as store:
        ctx = Context(store=store, since=EPOCH, until=FAR_FUTURE, clock=lambda: NOW)
        return build_report(ctx, diagnose(ctx), generated_at=NOW)


def test_escape_covers_quotes() -> None:
    assert esc("<a href='x\">") == "&lt;a href=&#x27;x&quot;&gt;"


def test_report_is_self_contained_and_escaped(report_html: str) -> None:
    assert "<script" not in report_html.lower()
    assert "<img" not in report_html.lower() and "<svg onload" not in report_html.lower()
    assert not re.search(r"(src|href)=\"?(https?:)?//", report_html)  # loads nothing
    assert esc(HELO_PAYLOAD) in report_html
    assert esc(SUBJECT_PAYLOAD) in report_html
    assert esc(ORIG_SUBJECT_PAYLOAD) in report_html
    for chart in ("chart-outcomes", "chart-delays", "chart-reasons"):
        assert f'id="{chart}"' in report_html


def test_header_shows_the_datas_range_and_totals(report_html: str) -> None:
    # asked for everything (1970 .. 9999); the page says when the data is from
    m = re.search(r"range (\d{4}-\d\d-\d\d \d\d:\d\d) \.\. (\d{4}-\d\d-\d\d)", report_html)
    assert m is not None and m.group(1).startswith("2026-") and m.group(2).startswith("2026-")
    assert "1970-01-01" not in report_html and "9999-01-01" not in report_html
    assert re.search(r"recipients \d+ in \d+ messages: delivered \d+ \(\d+\.\d%\)", report_html)


def test_volume_chart_stacks_each_status_on_a_time_axis_with_gaps() -> None:
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    rows = [
        {"hour": t0, "delivered": 3, "deferred": 1, "bounced": 2, "rejected": 0},
        {"hour": t0 + timedelta(hours=1), "delivered": 1, "deferred": 0, "bounced": 0,
         "rejected": 4},
        {"hour": t0 + timedelta(hours=20), "delivered": 5, "deferred": 0, "bounced": 0,
         "rejected": 0},
    ]  # fmt: skip
    axis = Axis.over(t0, t0 + timedelta(hours=20), 3600)
    svg = chart_volume(axis, rows)
    assert svg.count('class="bar bar-delivered"') == 3 and svg.count('class="bar bar-bounced"') == 1
    assert svg.count('class="bar bar-rejected"') == 1
    assert "bar-deferred" in svg and svg.count("bar-deferred") == 1  # zero segments not drawn
    xs = sorted({float(x) for x in re.findall(r'class="bar bar-delivered" x="([\d.]+)"', svg)})
    # 1 h between the first two bars, 19 h between the last two: the gap is on the axis
    assert (xs[2] - xs[1]) == pytest.approx(19 * (xs[1] - xs[0]), rel=0.01)


@pytest.mark.parametrize(
    ("span", "bucket"),
    [
        (timedelta(hours=1), 60),
        (timedelta(hours=4), 300),
        (timedelta(days=1), 3600),
        (timedelta(days=7), 3 * 3600),
        (timedelta(days=30), 86400),
        (timedelta(days=365), 7 * 86400),
    ],
)
def test_the_bucket_follows_the_range(span: timedelta, bucket: int) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    assert choose_bucket(t0, t0 + span) == bucket


def tick_labels(svg: str) -> list[tuple[float, str]]:
    return [(float(x), text) for x, text in
            re.findall(r'class="tick-label" x="([\d.]+)"[^>]*>([^<]*)</text>', svg)]  # fmt: skip


def assert_no_overlap(labels: list[tuple[float, str]]) -> None:
    """Each label's box (centred, CHAR_EM per character at the chart's font size, measured in
    the SVG's own units: the page scales the whole drawing, so this holds at any width)."""
    assert len(labels) >= 2, labels
    for (x1, a), (x2, b) in itertools.pairwise(labels):
        assert x2 - x1 >= (len(a) + len(b)) * FONT * CHAR_EM / 2, (a, b, x2 - x1)
    assert all(x - len(t) * FONT * CHAR_EM / 2 >= 0 and x + len(t) * FONT * CHAR_EM / 2 <= CHART_W
               for x, t in labels)  # fmt: skip


@pytest.mark.parametrize("span", [timedelta(minutes=50), timedelta(hours=30), timedelta(days=9),
                                  timedelta(days=80), timedelta(days=700)])  # fmt: skip
def test_axis_labels_never_overlap(span: timedelta) -> None:
    t0 = datetime(2026, 3, 1, 7, 13, tzinfo=UTC)
    bucket = choose_bucket(t0, t0 + span)
    axis = Axis.over(t0, t0 + span, bucket)
    rows = [{"hour": axis.start, "delivered": 1, "deferred": 0, "bounced": 0, "rejected": 0}]
    assert_no_overlap(tick_labels(chart_volume(axis, rows)))


def _chromium(
    html_file: Path, tmp: Path, *, screenshot: Path | None = None, width: int = 1280
) -> str:
    exe = need_binary("chromium")
    args = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        f"--window-size={width},2400",
        "--virtual-time-budget=2000",
    ]
    if screenshot is not None:
        subprocess.run(
            [*args, f"--screenshot={screenshot}", html_file.as_uri()],
            check=True,
            capture_output=True,
            timeout=120,
        )
    out = subprocess.run(
        [*args, "--dump-dom", html_file.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout


def _title(dom: str) -> str:
    m = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert m is not None, dom[:500]
    return m.group(1)


def test_harness_detects_a_script_that_runs(tmp_path: Path) -> None:
    # the check below would notice: a page whose script runs shows the changed title
    page = tmp_path / "control.html"
    page.write_text(
        f"<!DOCTYPE html><html><head><title>{TITLE}</title></head><body>"
        "<script>document.title='pwned-control';"
        "document.body.setAttribute('data-pwned','control')</script></body></html>"
    )
    dom = _chromium(page, tmp_path)
    assert _title(dom) == "pwned-control" and 'data-pwned="control"' in dom


@pytest.mark.slow
@pytest.mark.parametrize("csp", [True, False], ids=["with-csp", "escaping-only"])
def test_report_renders_in_chromium_and_nothing_runs(
    report_html: str, tmp_path: Path, csp: bool
) -> None:
    html_text = report_html
    if not csp:
        # the escaping alone must keep the payloads inert, without the policy's help
        html_text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html_text)
        assert "Content-Security-Policy" not in html_text
    page = tmp_path / "report.html"
    page.write_text(html_text, encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"diagnose-report-{'csp' if csp else 'nocsp'}.png"
    shot.unlink(missing_ok=True)
    dom = _chromium(page, tmp_path, screenshot=shot)
    assert shot.exists() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _title(dom) == TITLE
    assert not re.search(r"<body[^>]*data-pwned", dom)
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
    # the planted text is shown as text
    assert "&lt;script&gt;document.title='pwned-helo'&lt;/script&gt;" in dom
    assert "&lt;script&gt;document.title='pwned-subject'&lt;/script&gt;" in dom
    # the charts were drawn: each SVG has its bars
    for chart in ("chart-outcomes", "chart-delays", "chart-reasons"):
        m = re.search(rf'<svg[^>]*id="{chart}".*?</svg>', dom, re.S)
        assert m is not None, chart
        assert len(re.findall(r"<rect ", m.group(0))) >= 4, chart
    assert len(re.findall(r'<article class="finding', dom)) >= 15


def test_reason_colours_are_never_reused() -> None:
    from mtalens.pipeline.html_report import chart_reasons

    rows = [
        {"destination": f"d{i % 4}.example", "reason": f"reason-{i:02d}", "count": 20 - i}
        for i in range(15)
    ]
    svg = chart_reasons(rows)
    legend = re.findall(r'<i style="background:(#[0-9a-f]{6})"></i>([^<]+)</span>', svg)
    colours = [c for c, _ in legend]
    assert len(colours) == len(set(colours)), legend  # one colour, one reason
    assert legend[0][1] == "reason-00" and legend[-1][1] == "other reasons"
    assert len(legend) == 10  # nine reasons with colours of their own, then the rest together


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.slow
def test_report_at_phone_width_shows_the_reports_numbers(
    report_db: Path, report_html: str, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    page.write_text(report_html, encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "diagnose-report-phone.png"
    shot.unlink(missing_ok=True)
    dom = _chromium(page, tmp_path, screenshot=shot, width=390)
    assert _png_size(shot)[0] == 390 and shot.stat().st_size > 10_000
    # the cards are the report's own totals (report --format json, same store)
    with Store.open(report_db, read_only=True) as store:
        [totals] = report(store, since=EPOCH, until=FAR_FUTURE, sections=("totals",))
    expected = totals.records()[0]
    shown = {k: int(v.replace(",", "")) for k, v in
             re.findall(r'<b data-total="(\w+)">([\d,]+)</b>', dom)}  # fmt: skip
    assert len(shown) >= 6 and all(shown[k] == expected[k] for k in shown), (shown, expected)
    assert shown["delivered"] > 0 and shown["rejected"] > 0
    # charts before findings, each chart in a horizontal scroller (readable on a phone)
    assert dom.index('id="chart-outcomes"') < dom.index('id="findings"')
    for chart in ("chart-outcomes", "chart-delay-trend", "chart-reasons", "chart-delays"):
        assert re.search(rf'<div class="scroll"><svg class="chart" id="{chart}"', dom), chart
    # the axis as drawn: labels in order, apart (see assert_no_overlap)
    outcomes = re.search(r'<svg[^>]*id="chart-outcomes".*?</svg>', dom, re.S)
    assert outcomes is not None
    labels = tick_labels(outcomes.group(0))
    assert [x for x, _ in labels] == sorted(x for x, _ in labels)
    assert_no_overlap(labels)
    assert 'data-bucket-seconds="' in outcomes.group(0)
    trend = re.search(r'<svg[^>]*id="chart-delay-trend".*?</svg>', dom, re.S)
    assert trend is not None and re.search(r"<(polyline|circle) ", trend.group(0))
