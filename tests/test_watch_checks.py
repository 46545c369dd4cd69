"""Scheduled DNS and blocklist checks of `mtalens watch` (pipeline/checks.py, issue 17 item 3),
against the real nsd of the test suite (tests/lab/dns_server.py) on 127.0.0.1, with records
changed between two runs."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mtalens.pipeline.alerts import AlertEngine
from mtalens.pipeline.checks import CheckScheduler, commit_run, make_client_factory, run_checks
from mtalens.pipeline.dns import DnsClient, make_resolver
from mtalens.pipeline.metrics import Metrics
from mtalens.pipeline.store import Store
from mtalens.pipeline.watch_config import (
    AlertKind,
    ChecksConfig,
    WatchConfig,
    WatchConfigError,
    parse_watch_config,
)
from tests.conftest import need_binary
from tests.lab.dns_server import NsdServer, free_port

CLI = [sys.executable, "-c", "from mtalens.pipeline.cli import main; main()"]
OURS = "ours.test"
LISTED, CLEAN = "192.0.2.10", "192.0.2.11"


def zone(name: str, serial: int, body: str) -> str:
    head = (
        f"$ORIGIN {name}.\n$TTL 60\n"
        f"@ SOA ns1.{name}. hostmaster.{name}. {serial} 3600 600 86400 60\n@ NS ns1.{name}.\n"
    )
    return head + "\n".join(line.strip() for line in body.strip().splitlines()) + "\n"


def ours(serial: int, *, spf: str, dmarc: str) -> str:
    return zone(OURS, serial, f"""
        ns1 A 127.0.0.1
        @ MX 10 mx1
        mx1 A 192.0.2.10
        @ TXT "{spf}"
        _dmarc TXT "v=DMARC1; p={dmarc}; rua=mailto:dmarc@ours.test"
        _smtp._tls TXT "v=TLSRPTv1; rua=mailto:tlsrpt@ours.test"
    """)  # fmt: skip


def blocklist(serial: int, listed: list[str]) -> str:
    entries = []
    for ip in listed:
        name = ".".join(reversed(ip.split(".")))
        entries += [f"{name} A 127.0.0.2", f'{name} TXT "listed: see https://bl.test/{ip}"']
    return zone("bl.test", serial, "ns1 A 127.0.0.1\n" + "\n".join(entries))


FIRST = {
    OURS: ours(1, spf="v=spf1 ip4:192.0.2.0/24 -all", dmarc="reject"),
    "bl.test": blocklist(1, [LISTED]),
}
SECOND = {  # SPF changed, DMARC broken (p=block), the listing moved from one IP to the other
    OURS: ours(2, spf="v=spf1 ip4:198.51.100.0/24 -all", dmarc="block"),
    "bl.test": blocklist(2, [CLEAN]),
}


@pytest.fixture
def nsd(tmp_path: Path) -> Iterator[NsdServer]:
    with NsdServer(tmp_path / "nsd", dict(FIRST), binary=need_binary("nsd")) as srv:
        yield srv


def config(port: int, **kw: Any) -> ChecksConfig:
    values: dict[str, Any] = {
        "enabled": True,
        "domains": (OURS,),
        "ips": (LISTED, CLEAN),
        "ips_from_logs": False,
        "blocklists": ("bl.test",),
        "resolvers": ("127.0.0.1",),
        "resolver_port": port,
        "timeout": 2.0,
        "queries_per_second": 500.0,
    }
    values.update(kw)
    return ChecksConfig(**values)


def by_check(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {(r[0], r[1]): r[2:] for r in rows}


def latest_rows(store: Store) -> dict[tuple[str, str], tuple[Any, ...]]:
    return by_check(store.con.execute(
        "SELECT subject, check_name, status, changed, detail FROM check_latest"
    ).fetchall())  # fmt: skip


def test_runs_store_history_set_metrics_and_alert_on_changes(
    nsd: NsdServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(nsd.port)
    metrics = Metrics()
    sent: list[dict[str, Any]] = []
    engine = AlertEngine(WatchConfig(checks=cfg).alert_rules(), webhook="http://127.0.0.1:9/",
                         post=lambda _u, p: sent.append(p) or True, background=False)  # fmt: skip
    scheduler = CheckScheduler(cfg, client=make_client_factory(cfg), metrics=metrics)
    caplog.set_level(logging.INFO, logger="mtalens")

    with Store.open(tmp_path / "s.duckdb") as store:
        first = scheduler.run_once()
        assert first is not None
        commit_run(store, first, metrics=metrics, alerts=engine)
        now = latest_rows(store)
        assert now[(LISTED, "bl.test")][0] == "listed"
        assert "https://bl.test/192.0.2.10" not in now[(LISTED, "bl.test")][2]  # TXT not trusted
        assert now[(CLEAN, "bl.test")][0] == "not_listed"
        assert now[(OURS, "spf")][0] == "ok" and now[(OURS, "dmarc")][0] == "ok"
        assert now[(OURS, "mta-sts")][0] in ("warning", "ok")  # none published: not an error
        assert not any(row[1] for row in now.values())  # a first run changes nothing
        assert metrics.value("mtalens_dnsbl_listed", ip=LISTED, zone="bl.test") == 1
        assert metrics.value("mtalens_dnsbl_listed", ip=CLEAN, zone="bl.test") == 0
        assert metrics.value("mtalens_dns_check_ok", domain=OURS, check="dmarc") == 1
        assert [(p["alert"], p["state"], p["key"]) for p in sent] == [
            ("dnsbl-listed", "firing", f"{LISTED} bl.test")
        ]

        nsd.update(SECOND)
        sent.clear()
        second = scheduler.run_once()
        assert second is not None
        commit_run(store, second, metrics=metrics, alerts=engine)
        now = latest_rows(store)
        assert now[(OURS, "spf")][:2] == ("ok", True)  # changed, still valid
        assert now[(OURS, "dmarc")][0] == "error" and now[(OURS, "dmarc")][1] is True
        assert now[(OURS, "tls-rpt")][1] is False  # untouched record: no change
        assert now[(LISTED, "bl.test")][:2] == ("not_listed", True)
        assert now[(CLEAN, "bl.test")][:2] == ("listed", True)
        states = {(p["alert"], p["state"], p["key"]) for p in sent}
        assert states == {
            ("dnsbl-listed", "firing", f"{CLEAN} bl.test"),
            ("dnsbl-listed", "resolved", f"{LISTED} bl.test"),
            ("dns-broken", "firing", f"{OURS} dmarc"),
            ("dns-changed", "firing", f"{OURS} spf"),
            ("dns-changed", "firing", f"{OURS} dmarc"),
        }
        spf_alert = next(p for p in sent if p["key"] == f"{OURS} spf")
        assert "198.51.100.0/24" in spf_alert["detail"]
        assert metrics.value("mtalens_dns_check_ok", domain=OURS, check="dmarc") == 0
        assert metrics.value("mtalens_check_changes_total", kind="domain") == 2
        assert metrics.value("mtalens_check_runs_total") == 2

        # a third run with nothing changed: the change alerts resolve, the broken one stays
        sent.clear()
        third = scheduler.run_once()
        assert third is not None
        commit_run(store, third, metrics=metrics, alerts=engine)
        assert {(p["alert"], p["state"], p["key"]) for p in sent} == {
            ("dns-changed", "resolved", f"{OURS} spf"),
            ("dns-changed", "resolved", f"{OURS} dmarc"),
        }
        runs = store.con.execute(
            "SELECT count(DISTINCT run_at), count(*) FILTER (WHERE changed) FROM check_history"
        ).fetchone()
        assert runs == (3, 4)  # spf, dmarc and the two listings changed, once each
    assert any(r.getMessage() == "checks stored" for r in caplog.records)


def test_a_run_without_answers_is_unknown_not_a_change_nor_a_resolve(
    nsd: NsdServer, tmp_path: Path
) -> None:
    cfg = config(nsd.port)
    metrics = Metrics()
    engine = AlertEngine(WatchConfig(checks=cfg).alert_rules(), background=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # receives, never answers
        silent.bind(("127.0.0.1", 0))
        dead = config(silent.getsockname()[1], timeout=0.3)
        with Store.open(tmp_path / "s.duckdb") as store:
            good = CheckScheduler(cfg, client=make_client_factory(cfg)).run_once()
            assert good is not None
            commit_run(store, good, metrics=metrics, alerts=engine)
            assert (AlertKind.DNSBL_LISTED.value.replace("_", "-"), f"{LISTED} bl.test") in (
                engine.firing
            )
            started = time.monotonic()
            bad = CheckScheduler(dead, client=make_client_factory(dead)).run_once()
            assert bad is not None
            assert time.monotonic() - started < 2.0  # one timeout, the rest not sent
            assert {r.status for r in bad} == {"unknown"}
            marked = commit_run(store, bad, metrics=metrics, alerts=engine)
            assert not any(r.changed for r in marked)
            assert ("dnsbl-listed", f"{LISTED} bl.test") in engine.firing  # not resolved
            assert metrics.value("mtalens_dnsbl_listed", ip=LISTED, zone="bl.test") == -1
            # the next answered run compares with the last answered one, not the unknown one
            again = CheckScheduler(cfg, client=make_client_factory(cfg)).run_once()
            assert again is not None
            assert not any(r.changed for r in commit_run(store, again, metrics=metrics,
                                                         alerts=engine))  # fmt: skip


def test_spamhaus_is_not_queried_through_a_public_resolver(nsd: NsdServer) -> None:
    cfg = config(nsd.port, resolvers=("8.8.8.8",), domains=(), ips=(LISTED,),
                 blocklists=("zen.spamhaus.org", "bl.test"))  # fmt: skip
    # the lookups go to the local nsd (what this test can reach); the rule reads the config
    client = DnsClient(make_resolver(["127.0.0.1"], port=nsd.port, timeout=2.0),
                       clock=lambda: datetime.now(UTC))  # fmt: skip
    results = run_checks(client, cfg, cfg.ips, clock=lambda: datetime.now(UTC))
    zen = next(r for r in results if r.check_name == "zen.spamhaus.org")
    assert zen.status == "unknown" and "public resolvers (8.8.8.8)" in zen.detail
    assert next(r for r in results if r.check_name == "bl.test").status == "listed"
    assert client.queries_sent == 2  # bl.test's A and TXT; nothing for zen


def test_lookups_are_paced(nsd: NsdServer) -> None:
    slept: list[float] = []
    client = DnsClient(make_resolver(["127.0.0.1"], port=nsd.port, timeout=2.0),
                       clock=lambda: datetime.now(UTC), queries_per_second=20,
                       sleep=lambda s: (slept.append(s), time.sleep(s)))  # fmt: skip
    started = time.monotonic()
    for i in range(6):
        client.query(f"n{i}.{OURS}", "A")
    assert time.monotonic() - started >= 5 / 20 - 0.01  # 6 sends: 5 gaps of 50 ms
    assert len(slept) >= 4


def test_checks_config_from_the_file() -> None:
    cfg = parse_watch_config({"checks": {"domains": ["Ours.Test"], "ips": ["192.0.2.1"],
                                         "interval": 60}})  # fmt: skip
    assert cfg.checks.enabled and cfg.checks.domains == ("ours.test",)
    assert {r.kind for r in cfg.alert_rules()} == {
        AlertKind.DNSBL_LISTED,
        AlertKind.DNS_BROKEN,
        AlertKind.DNS_CHANGED,
    }
    assert not parse_watch_config({}).checks.enabled
    assert parse_watch_config({}).alert_rules() == ()
    with pytest.raises(WatchConfigError, match="not an IP address"):
        parse_watch_config({"checks": {"ips": ["mx.example.com"]}})
    with pytest.raises(WatchConfigError, match="unknown key 'domain'"):
        parse_watch_config({"checks": {"domain": "x"}})
    with pytest.raises(WatchConfigError, match="interval must be >= 1"):
        parse_watch_config({"checks": {"interval": 0}})


# ------------------------------------------------------------------------ the daemon, end to end

# a refusal quoting the address the remote saw us connect from (diagnose's our_addresses)
BLOCKED_LINE = (
    "Mar  2 10:00:01 mx postfix/smtp[4242]: 3F1A2B4C5D: to=<user@remote.example>, "
    "relay=mx.remote.example[203.0.113.5]:25, delay=1.2, delays=0.1/0/0.6/0.5, dsn=5.7.1, "
    "status=bounced (host mx.remote.example[203.0.113.5] said: 554 5.7.1 Service unavailable; "
    "Client host [192.0.2.10] blocked using bl.test (in reply to RCPT TO command))\n"
)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_daemon_checks_on_its_schedule_and_alerts_on_a_change(
    nsd: NsdServer, tmp_path: Path
) -> None:
    log, db, err = tmp_path / "mail.log", tmp_path / "w.duckdb", tmp_path / "watch.err"
    log.write_text(BLOCKED_LINE)
    port = free_port()
    with open(err, "wb") as fh:
        proc = subprocess.Popen(
            [*CLI, "watch", "--db", str(db), "--log", str(log), "--timezone", "UTC",
             "--metrics-port", str(port), "--commit-interval", "0.1",
             "--poll-interval", "0.2", "--check-domain", OURS, "--check-blocklist", "bl.test",
             "--check-resolver", "127.0.0.1", "--check-resolver-port", str(nsd.port),
             "--check-interval", "1"],
            stdout=subprocess.DEVNULL, stderr=fh,
        )  # fmt: skip
    try:
        # our IP came from the log line alone (no --check-ip)
        wait_for(lambda: 'mtalens_dnsbl_listed{ip="192.0.2.10",zone="bl.test"} 1' in _try(port),
                 30, "the first run of the checks")  # fmt: skip
        nsd.update(SECOND)
        # a run may straddle the update: wait for one that saw all of it
        wait_for(lambda: 'mtalens_check_changes_total{kind="domain"}' in (page := _try(port))
                 and 'mtalens_dnsbl_listed{ip="192.0.2.10",zone="bl.test"} 0' in page, 30,
                 "a run that sees the changed records")  # fmt: skip
        assert 'mtalens_dns_check_ok{check="dmarc",domain="ours.test"} 0' in scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    lines = [json.loads(x) for x in err.read_text().splitlines() if x.startswith("{")]
    alerts = {(x["alert"]["alert"], x["alert"]["state"], x["alert"]["key"])
              for x in lines if x["msg"].startswith("alert ")}  # fmt: skip
    assert ("dnsbl-listed", "firing", f"{LISTED} bl.test") in alerts
    assert ("dnsbl-listed", "resolved", f"{LISTED} bl.test") in alerts
    assert ("dns-changed", "firing", f"{OURS} spf") in alerts
    assert ("dns-broken", "firing", f"{OURS} dmarc") in alerts
    assert "Traceback" not in err.read_text()
    with Store.open(db, read_only=True) as store:
        spf = store.con.execute(
            "SELECT status, changed, records FROM check_history WHERE subject = ? AND "
            "check_name = 'spf' ORDER BY checked_at", [OURS]
        ).fetchall()  # fmt: skip
    assert len(spf) >= 2 and spf[0][1] is False
    changed = [r for r in spf if r[1]]
    assert len(changed) == 1 and any("198.51.100.0/24" in rec for rec in changed[0][2])


def _try(port: int) -> str:
    try:
        return scrape(port)
    except OSError:
        return ""


def test_watch_once_runs_the_checks_once(nsd: NsdServer, tmp_path: Path) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "o.duckdb"
    log.write_text(BLOCKED_LINE)
    conf = tmp_path / "mtalens.toml"
    conf.write_text(
        f'[checks]\ndomains = ["{OURS}"]\nblocklists = ["bl.test"]\nips = ["{CLEAN}"]\n'
        f'resolvers = ["127.0.0.1"]\nresolver_port = {nsd.port}\n'
    )
    cmd = [*CLI, "watch", "--once", "--config", str(conf), "--db", str(db), "--log", str(log),
           "--timezone", "UTC"]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    nsd.update(SECOND)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    with Store.open(db, read_only=True) as store:
        rows = store.con.execute(
            "SELECT subject, check_name, count(*), count(*) FILTER (WHERE changed) "
            "FROM check_history GROUP BY ALL"
        ).fetchall()
    got = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    assert got[(LISTED, "bl.test")] == (2, 1)  # from the log; listed, then not
    assert got[(CLEAN, "bl.test")] == (2, 1)  # from the config; not listed, then listed
    assert got[(OURS, "spf")] == (2, 1) and got[(OURS, "mx")] == (2, 0)
    assert '"dns-changed"' in second.stderr and '"dns-changed"' not in first.stderr
