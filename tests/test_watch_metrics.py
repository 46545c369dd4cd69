"""Metrics (Prometheus text over real HTTP on 127.0.0.1) and alerts (once per episode, JSON log
line, webhook to a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mtalens.pipeline.alerts import AlertEngine
from mtalens.pipeline.metrics import MetricsServer
from mtalens.pipeline.store import Store
from mtalens.pipeline.watch import Watcher
from mtalens.pipeline.watch_config import AlertKind, AlertRule, WatchConfig

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)

ROOT = Path(__file__).resolve().parent.parent


def delivery(sec: int, rcpt: str, status: str, **kw: Any) -> dict[str, Any]:
    return {"logged_at": T0 + timedelta(seconds=sec), "recipient": rcpt, "status": status, **kw}


def test_metrics_from_a_real_log_over_http(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(
        "Mar  2 06:00:01 mx1 postfix/smtp[201]: 4A1B2C3D4E: to=<a@example.com>, relay=mx.example.com"
        "[192.0.2.1]:25, delay=1.5, delays=0.1/0.2/0.3/0.9, dsn=2.0.0, status=sent (250 ok)\n"
        "Mar  2 06:00:02 mx1 postfix/smtp[201]: 5B2C3D4E5F: to=<b@example.com>, relay=mx.example.com"
        "[192.0.2.1]:25, delay=2, delays=0.1/0.2/0.3/1.4, dsn=5.1.1, status=bounced (host "
        "mx.example.com[192.0.2.1] said: 550 5.1.1 user unknown (in reply to RCPT TO command))\n"
        "Mar  2 06:00:03 mx1 postfix/smtpd[301]: NOQUEUE: reject: RCPT from unknown[198.51.100.9]:"
        " 554 5.7.1 <c@example.net>: Relay access denied; from=<x@example.org> "
        "to=<c@example.net> proto=ESMTP helo=<h>\n"
        "Mar  2 06:00:04 mx1 postfix/smtpd[301]: warning: unknown[198.51.100.9]: SASL LOGIN "
        "authentication failed: UGFzc3dvcmQ6\n"
        "\xff garbage\n"
    )
    w = Watcher(WatchConfig(db=str(tmp_path / "w.duckdb"), logs=(str(log),), timezone="UTC",
                            year=2026))  # fmt: skip
    w.window()
    w.close()
    server = MetricsServer(w.metrics, "127.0.0.1", 0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = r.read().decode()
    finally:
        server.stop()
    assert 'postfix_smtp_messages_processed_total{status="sent"} 1' in text
    assert 'postfix_smtp_messages_processed_total{status="bounced"} 1' in text
    assert 'postfix_smtp_bounced_messages_by_dsn_total{dsn="5.1.1"} 1' in text
    assert 'postfix_smtpd_messages_rejected_total{code="554"} 1' in text
    assert "postfix_smtpd_sasl_authentication_failures_total 1" in text
    assert 'postfix_smtp_delivery_delay_seconds_count{stage="transmission"} 2' in text
    assert 'postfix_smtp_delivery_delay_seconds_sum{stage="transmission"} 2.3' in text
    assert f'mtalens_lines_total{{mta="postfix",outcome="read",source="{log}"}} 5' in text
    assert f'mtalens_lines_total{{mta="postfix",outcome="quarantined",source="{log}"}} 1' in text
    assert "mtalens_bounces_total{" in text
    assert "process_resident_memory_bytes " in text
    assert "example.com" not in text and "198.51.100.9" not in text  # no per-address labels


def test_metrics_carry_the_mta_of_each_log(tmp_path: Path) -> None:
    # one Exim main log and one Sendmail syslog file watched together: each series says which
    # MTA logged it, exim_exporter's series come from the Exim log only, and postfix_exporter's
    # from neither
    exim = tmp_path / "mainlog"
    shutil.copy(ROOT / "sample_logs/exim/real-exim-4.96.log", exim)
    sendmail = tmp_path / "maillog"
    shutil.copy(ROOT / "sample_logs/sendmail/handwritten-8.15.log", sendmail)
    w = Watcher(WatchConfig(db=str(tmp_path / "w.duckdb"), logs=(str(exim), str(sendmail)),
                            timezone="UTC", year=2026))  # fmt: skip
    w.window()
    w.close()
    m = w.metrics
    with Store.open(tmp_path / "w.duckdb", read_only=True) as s:
        groups = s.con.execute(
            "SELECT mta, service, status, count(*) FROM deliveries GROUP BY ALL"
        ).fetchall()
        exim_rejects = s.con.execute(
            "SELECT count(*) FROM rejections WHERE mta = 'exim'"
        ).fetchone()
        completed = s.con.execute(
            "SELECT count(*) FROM messages WHERE mta = 'exim' AND removed_at IS NOT NULL"
        ).fetchone()
    for mta, service, status, n in groups:
        assert m.value("mtalens_deliveries_total", service=service, status=status, mta=mta) == n
    assert {g[0] for g in groups} == {"exim", "sendmail"}
    exim = {
        st: sum(g[3] for g in groups if g[0] == "exim" and g[2] == st)
        for st in ("sent", "deferred")
    }
    assert m.value("exim_messages_total", flag="delivered") == exim["sent"] > 0
    assert m.value("exim_messages_total", flag="deferred") == exim["deferred"] > 0
    assert exim_rejects is not None and m.value("exim_reject_total") == exim_rejects[0] > 0
    assert (
        completed is not None and m.value("exim_messages_total", flag="completed") == completed[0]
    )
    assert (
        m.value("mtalens_lines_total", source=str(sendmail), outcome="read", mta="sendmail") == 28
    )
    assert "postfix_" not in m.render()


class _Hook(BaseHTTPRequestHandler):
    got: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        n = int(self.headers["Content-Length"])
        _Hook.got.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_bounce_rate_fires_once_per_episode_to_log_and_webhook(
    caplog: pytest.LogCaptureFixture,
) -> None:
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Hook.got = []
    try:
        rule = AlertRule(id="b", kind=AlertKind.BOUNCE_RATE, window=60, threshold=0.5,
                         min_events=4)  # fmt: skip
        eng = AlertEngine([rule], webhook=f"http://127.0.0.1:{srv.server_port}/", background=False)
        eng.feed([delivery(i, f"u{i}@bad.example", "bounced") for i in range(3)])
        assert eng.evaluate() == []  # 3 < min_events
        eng.feed([delivery(3, "u@bad.example", "sent"), delivery(4, "v@good.example", "sent")])
        fired = eng.evaluate()
        assert [(f["state"], f["key"], f["value"]) for f in fired] == [
            ("firing", "bad.example", 0.75)
        ]
        eng.feed([delivery(5 + i, f"w{i}@bad.example", "bounced") for i in range(5)])
        assert eng.evaluate() == []  # still the same episode
        eng.feed([delivery(200 + i, f"x{i}@bad.example", "sent") for i in range(5)])
        assert [f["state"] for f in eng.evaluate()] == ["resolved"]
        eng.feed([delivery(300 + i, f"y{i}@bad.example", "bounced") for i in range(6)])
        assert [f["state"] for f in eng.evaluate()] == ["firing"]  # a new episode
    finally:
        srv.shutdown()
        srv.server_close()
    assert [(g["alert"], g["state"]) for g in _Hook.got] == [
        ("b", "firing"),
        ("b", "resolved"),
        ("b", "firing"),
    ]
    logged = [r for r in caplog.records if r.name == "mtalens.alerts"]
    assert [r.getMessage() for r in logged] == ["alert firing", "alert resolved", "alert firing"]


def test_other_alert_kinds() -> None:
    rules = [
        AlertRule(id="sasl", kind=AlertKind.SASL_FAILURES, window=60, threshold=3),
        AlertRule(id="bl", kind=AlertKind.BLOCKLIST, window=60, threshold=1),
        AlertRule(
            id="p90", kind=AlertKind.QUEUE_DELAY_P90, window=600, threshold=30, min_events=10
        ),
        AlertRule(
            id="defer",
            kind=AlertKind.DEFERRAL_RATE,
            window=60,
            threshold=0.5,
            domain="slow.example",
            min_events=2,
        ),
    ]
    eng = AlertEngine(rules, post=lambda url, p: None)
    auth = [{"logged_at": T0 + timedelta(seconds=i), "client_ip": "203.0.113.5"} for i in range(3)]
    eng.feed(
        [delivery(i, f"a{i}@x.example", "sent", delay=float(5 if i < 8 else 100)) for i in range(10)]
        + [delivery(11, "b@y.example", "bounced", blocklist="zen.spamhaus.org")]
        + [delivery(12, "c@slow.example", "deferred"), delivery(13, "d@slow.example", "deferred"),
           delivery(14, "e@other.example", "deferred")],
        auth,
    )  # fmt: skip
    got = {(f["alert"], f["key"]) for f in eng.evaluate()}
    # p90 of [5]*8 + [100]*2 is 100 (nearest rank 9 of 10)
    assert got == {("sasl", "203.0.113.5"), ("bl", "zen.spamhaus.org"), ("p90", ""),
                   ("defer", "slow.example")}  # fmt: skip


def test_postfix_exporter_smtpd_and_tls_counters(tmp_path: Path) -> None:
    """The names dashboards built for postfix_exporter read: connects, disconnects, lost
    connections, TLS connections by trust/protocol/cipher, connection timeouts; and the
    process CPU counter typed as a counter."""
    log = tmp_path / "mail.log"
    log.write_text(
        "Mar  2 06:00:01 mx1 postfix/smtpd[301]: connect from unknown[198.51.100.9]\n"
        "Mar  2 06:00:01 mx1 postfix/smtpd[301]: Anonymous TLS connection established from "
        "unknown[198.51.100.9]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n"
        "Mar  2 06:00:02 mx1 postfix/smtpd[301]: lost connection after AUTH from "
        "unknown[198.51.100.9]\n"
        "Mar  2 06:00:02 mx1 postfix/smtpd[301]: disconnect from unknown[198.51.100.9] ehlo=1 "
        "auth=0/1 commands=1/2\n"
        "Mar  2 06:00:03 mx1 postfix/smtpd[302]: connect from mail.example.org[203.0.113.5]\n"
        "Mar  2 06:00:04 mx1 postfix/smtp[401]: Trusted TLS connection established to "
        "mx.example.com[192.0.2.1]:25: TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 "
        "(256/256 bits)\n"
        "Mar  2 06:00:05 mx1 postfix/smtp[402]: connect to mx.down.example[192.0.2.7]:25: "
        "Connection timed out\n"
    )
    w = Watcher(WatchConfig(db=str(tmp_path / "w.duckdb"), logs=(str(log),), timezone="UTC",
                            year=2026))  # fmt: skip
    w.window()
    w.close()
    text = w.metrics.render()
    assert "postfix_smtpd_connects_total 2" in text
    assert "postfix_smtpd_disconnects_total 1" in text
    assert 'postfix_smtpd_connections_lost_total{after_stage="AUTH"} 1' in text
    assert (
        'postfix_smtpd_tls_connections_total{algorithm_bits="256",cipher="TLS_AES_256_GCM_SHA384",'
        'protocol="TLSv1.3",secret_bits="256",trust="Anonymous"} 1'
    ) in text
    assert (
        'postfix_smtp_tls_connections_total{algorithm_bits="256",cipher="ECDHE-RSA-AES256-' in text
    )
    assert 'protocol="TLSv1.2",secret_bits="256",trust="Trusted"} 1' in text
    assert "postfix_smtp_connection_timed_out_total 1" in text
    assert "# TYPE process_cpu_seconds_total counter" in text
    assert "198.51.100.9" not in text and "example.com" not in text  # no per-address labels


def test_the_grafana_dashboard_reads_only_metrics_the_daemon_serves(tmp_path: Path) -> None:
    """deploy/grafana-mtalens.json: every series a panel queries is one `watch` exposes (a
    renamed metric would leave a panel empty)."""
    import re

    dash = json.loads((ROOT / "deploy" / "grafana-mtalens.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    functions = {"sum", "by", "rate", "increase", "histogram_quantile", "le"}
    used = {
        name
        for e in exprs
        for name in re.findall(r"[a-z_][a-z0-9_]*", re.sub(r'"[^"]*"|\[[^]]*\]', "", e))
        if name not in functions and "_" in name
    }
    used -= {"after_stage", "status", "dsn", "stage", "code", "reason", "protocol"}  # labels
    served = set()
    for line in _served_metrics(tmp_path).splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            served |= {name, f"{name}_bucket"} if kind == "histogram" else {name}
    assert used <= served, used - served


def _served_metrics(tmp: Path) -> str:
    """What a daemon serves after a log with one line of each kind the dashboard shows."""
    log = tmp / "all.log"
    log.write_text(
        "Mar  2 06:00:01 mx1 postfix/smtp[201]: 4A1B2C3D4E: to=<a@example.com>, relay=mx.example.com"
        "[192.0.2.1]:25, delay=1.5, delays=0.1/0.2/0.3/0.9, dsn=2.0.0, status=sent (250 ok)\n"
        "Mar  2 06:00:02 mx1 postfix/smtp[201]: 5B2C3D4E5F: to=<b@example.com>, relay=mx.example.com"
        "[192.0.2.1]:25, delay=2, delays=0.1/0.2/0.3/1.4, dsn=5.1.1, status=bounced (host "
        "mx.example.com[192.0.2.1] said: 550 5.1.1 user unknown (in reply to RCPT TO command))\n"
        "Mar  2 06:00:02 mx1 postfix/smtp[202]: 6C3D4E5F6A: to=<c@example.com>, relay=none, "
        "delay=30, delays=0/0/30/0, dsn=4.4.1, status=deferred (connect to mx.example.com"
        "[192.0.2.1]:25: Connection timed out)\n"
        "Mar  2 06:00:03 mx1 postfix/smtpd[301]: NOQUEUE: reject: RCPT from unknown[198.51.100.9]:"
        " 554 5.7.1 <c@example.net>: Relay access denied; from=<x@example.org> "
        "to=<c@example.net> proto=ESMTP helo=<h>\n"
        "Mar  2 06:00:04 mx1 postfix/smtpd[301]: warning: unknown[198.51.100.9]: SASL LOGIN "
        "authentication failed: UGFzc3dvcmQ6\n"
        "Mar  2 06:00:05 mx1 postfix/smtpd[301]: connect from unknown[198.51.100.9]\n"
        "Mar  2 06:00:05 mx1 postfix/smtpd[301]: Anonymous TLS connection established from "
        "unknown[198.51.100.9]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n"
        "Mar  2 06:00:06 mx1 postfix/smtpd[301]: lost connection after AUTH from "
        "unknown[198.51.100.9]\n"
        "Mar  2 06:00:06 mx1 postfix/smtpd[301]: disconnect from unknown[198.51.100.9] ehlo=1 "
        "commands=1\n"
        "Mar  2 06:00:07 mx1 postfix/smtp[402]: connect to mx.down.example[192.0.2.7]:25: "
        "Connection timed out\n"
        "\xff garbage\n"
    )
    w = Watcher(WatchConfig(db=str(tmp / "w.duckdb"), logs=(str(log),), timezone="UTC",
                            year=2026))  # fmt: skip
    w.window()
    w.close()
    return w.metrics.render()


QUEUE_LOG = (
    "Mar  2 06:00:00 mx1 postfix/smtpd[301]: 4A1B2C3D01: client=unknown[198.51.100.9]\n"
    "Mar  2 06:00:00 mx1 postfix/smtpd[302]: 4A1B2C3D02: client=mail.example.org"
    "[203.0.113.5]:40000, sasl_method=PLAIN, sasl_username=alice\n"
    "Mar  2 06:00:01 mx1 postfix/cleanup[501]: 4A1B2C3D01: message-id=<q1@example.org>\n"
    "Mar  2 06:00:01 mx1 postfix/qmgr[42]: 4A1B2C3D01: from=<a@example.org>, size=2500, "
    "nrcpt=3 (queue active)\n"
    "Mar  2 06:00:02 mx1 postfix/cleanup[501]: 4A1B2C3D02: message-id=<q2@example.org>\n"
    "Mar  2 06:00:02 mx1 postfix/qmgr[42]: 4A1B2C3D02: from=<b@example.org>, size=150000, "
    "nrcpt=1 (queue active)\n"
    "Mar  2 06:00:03 mx1 postfix/cleanup[501]: 4A1B2C3D03: reject: header Subject: spam from "
    "unknown[198.51.100.9]; from=<c@example.org> to=<d@example.net> proto=ESMTP "
    "helo=<x>: 5.7.1 message content rejected\n"
    "Mar  2 06:00:04 mx1 postfix/qmgr[42]: 4A1B2C3D01: removed\n"
    "Mar  3 06:00:04 mx1 postfix/qmgr[42]: 4A1B2C3D02: from=<b@example.org>, status=expired, "
    "returned to sender\n"
    "Mar  3 06:00:04 mx1 postfix/qmgr[42]: 4A1B2C3D02: removed\n"
)


@pytest.mark.parametrize("pure", [False, True], ids=["fast", "pure"])
def test_postfix_exporter_qmgr_and_cleanup_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pure: bool
) -> None:
    if pure:
        monkeypatch.setenv("MTALENS_PURE_PYTHON", "1")
    log = tmp_path / "mail.log"
    log.write_text(QUEUE_LOG)
    w = Watcher(WatchConfig(db=str(tmp_path / "w.duckdb"), logs=(str(log),), timezone="UTC",
                            year=2026))  # fmt: skip
    w.window()
    w.close()
    text = w.metrics.render()
    assert "postfix_cleanup_messages_processed_total 2" in text
    assert 'postfix_smtpd_messages_processed_total{sasl_method=""} 1' in text
    assert 'postfix_smtpd_messages_processed_total{sasl_method="PLAIN"} 1' in text
    assert "postfix_cleanup_messages_rejected_total 1" in text
    assert "postfix_qmgr_messages_removed_total 2" in text
    assert "postfix_qmgr_messages_expired_total 1" in text
    assert "# TYPE postfix_qmgr_messages_inserted_receipients histogram" in text
    assert 'postfix_qmgr_messages_inserted_receipients_bucket{le="1"} 1' in text
    assert 'postfix_qmgr_messages_inserted_receipients_bucket{le="4"} 2' in text
    assert "postfix_qmgr_messages_inserted_receipients_sum 4" in text
    assert 'postfix_qmgr_messages_inserted_size_bytes_bucket{le="10000"} 1' in text
    assert "postfix_qmgr_messages_inserted_size_bytes_count 2" in text
