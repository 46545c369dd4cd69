"""SMTP TLS reports (RFC 8460): parsing (parsers/tlsrpt.py), reports in mail (section 5.3
media types), the store's tlsrpt_* views, and the TLS-RPT findings of `diagnose`.

Reports are written by tests/report_samples.py in several reporters' layouts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtalens.parsers.errors import ParseError
from mtalens.parsers.report_mail import find_reports
from mtalens.parsers.tlsrpt import RESULT_TYPES, parse_tlsrpt
from mtalens.pipeline.aggregate_reports import ingest_reports
from mtalens.pipeline.cli import app
from mtalens.pipeline.diagnose import Context, Severity, diagnose
from mtalens.pipeline.store import Store
from mtalens.pipeline.timerange import EPOCH, FAR_FUTURE
from tests.report_samples import gzipped, report_mail, tls_policy, tlsrpt_json

NOW = datetime(2026, 5, 9, tzinfo=UTC)
runner = CliRunner()


def failure(result: str, *, ip: str, mx: str, n: int, **extra: object) -> dict[str, object]:
    out: dict[str, object] = {
        "result-type": result,
        "sending-mta-ip": ip,
        "receiving-mx-hostname": mx,
        "failed-session-count": n,
    }
    out.update(extra)
    return out


def google_style(rid: str = "2026-05-07T00:00:00Z_example.com") -> bytes:
    """Google: mx-host as a list, policy-string lines, failure-details with receiving-ip."""
    return tlsrpt_json(
        org="Google Inc.",
        report_id=rid,
        policies=[
            tls_policy(
                ok=5326,
                failed=303,
                mx=("mx1.example.com", "mx2.example.com"),
                failures=[
                    failure(
                        "certificate-expired",
                        ip="209.85.220.41",
                        mx="mx1.example.com.",
                        n=300,
                        **{"receiving-ip": "192.0.2.25"},
                    ),
                    failure(
                        "starttls-not-supported", ip="209.85.220.42", mx="MX2.example.com", n=3
                    ),
                ],
            )
        ],
    )


def microsoft_style() -> bytes:
    """Microsoft: mx-host as a single string, a no-policy-found entry without failures, extra
    members RFC 8460 does not define (ignored)."""
    doc = json.loads(
        tlsrpt_json(
            org="Microsoft Corporation",
            report_id="133590000000000000+example.com",
            start="2026-05-07T00:00:00+00:00",
            end="2026-05-08T00:00:00+00:00",
            contact=None,
            policies=[
                tls_policy(domain="example.org", policy_type="no-policy-found", ok=40),
                tls_policy(
                    mode="testing",
                    mx_as_string=True,
                    ok=10,
                    failed=2,
                    failures=[
                        failure(
                            "validation-failure", ip="40.107.1.1", mx="mx1.example.com", n=2,
                            **{"failure-reason-code": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT", "receiving-mx-helo": "mx1.example.com"},
                        )
                    ],
                ),
            ],
        )
    )  # fmt: skip
    doc["x-microsoft-extra"] = {"note": "not in RFC 8460"}
    return json.dumps(doc).encode()


def test_google_style_report() -> None:
    r = parse_tlsrpt(google_style())
    assert (r.organization_name, r.report_id) == ("Google Inc.", "2026-05-07T00:00:00Z_example.com")
    assert (r.begin, r.end) == (
        datetime(2026, 5, 7, tzinfo=UTC),
        datetime(2026, 5, 7, 23, 59, 59, tzinfo=UTC),
    )
    [p] = r.policies
    assert (p.policy_type, p.policy_domain, p.successful_sessions, p.failed_sessions) == (
        "sts",
        "example.com",
        5326,
        303,
    )
    assert p.mx_hosts == ("mx1.example.com", "mx2.example.com")
    assert "mode: enforce" in p.policy_string
    assert [
        (f.result_type, f.receiving_mx_hostname, f.failed_session_count) for f in p.failures
    ] == [
        ("certificate-expired", "mx1.example.com", 300),
        ("starttls-not-supported", "mx2.example.com", 3),
    ]
    assert p.failures[0].receiving_ip == "192.0.2.25"


def test_microsoft_style_report() -> None:
    r = parse_tlsrpt(microsoft_style())
    assert r.contact_info is None
    assert [p.policy_type for p in r.policies] == ["no-policy-found", "sts"]
    assert r.policies[0].failures == () and r.policies[0].mx_hosts == ()
    assert r.policies[1].mx_hosts == ("mx1.example.com",)
    f = r.policies[1].failures[0]
    assert (f.failure_reason_code, f.receiving_mx_helo) == (
        "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT",
        "mx1.example.com",
    )


def test_rfc_result_types_are_all_known() -> None:
    # RFC 8460 section 4.3: five negotiation failures, three DANE, three MTA-STS
    assert len(RESULT_TYPES) == 11
    assert {"certificate-expired", "starttls-not-supported", "sts-policy-invalid"} <= RESULT_TYPES


def _doc(**changes: object) -> bytes:
    doc = json.loads(google_style())
    for k, v in changes.items():
        if v is None:
            doc.pop(k)
        else:
            doc[k] = v
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json", "bad-json"),
        (b'{"organization-name": NaN}', "bad-json"),
        (b"[" * 100_000 + b"]" * 100_000, "bad-json"),
        (b"\xff\xfe{}", "bad-json"),
        (b'{"hello": "world"}', "not-tlsrpt"),
        (b"[1, 2]", "tlsrpt-bad-value"),
        (_doc(**{"report-id": None}), "tlsrpt-missing-field"),
        (_doc(**{"organization-name": 42}), "tlsrpt-bad-value"),
        (_doc(**{"date-range": {"start-datetime": "yesterday", "end-datetime": "today"}}), "tlsrpt-bad-value"),
        (_doc(**{"date-range": {"start-datetime": "2026-05-08T00:00:00Z", "end-datetime": "2026-05-07T00:00:00Z"}}), "tlsrpt-bad-value"),
        (_doc(policies="none"), "tlsrpt-missing-field"),
        (_doc(policies=[{"policy": {"policy-type": "sts"}, "summary": {}}]), "tlsrpt-missing-field"),
        (
            _doc(policies=[tls_policy(failures=[failure("certificate-expired", ip="192.0.2.1", mx="mx", n=-1)])]),
            "tlsrpt-bad-value",
        ),
        (
            _doc(policies=[tls_policy(failures=[{"sending-mta-ip": "192.0.2.1", "failed-session-count": 1}])]),
            "tlsrpt-missing-field",
        ),
    ],
)  # fmt: skip
def test_broken_reports_name_the_problem(data: bytes, code: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_tlsrpt(data)
    assert err.value.code == code


@pytest.mark.parametrize("media", ["application/tlsrpt+gzip", "application/tlsrpt+json"])
def test_report_in_mail_is_found(media: str) -> None:
    body = google_style()
    data = gzipped(body) if media.endswith("gzip") else body
    # RFC 8460 section 5.1 file name, section 5.3 headers
    name = "google.com!example.com!1778112000!1778198399!001.json" + (
        ".gz" if media.endswith("gzip") else ""
    )
    raw = report_mail(
        data,
        name=name,
        content_type=media,
        subject="Report Domain: example.com Submitter: google.com Report-ID: <x@google.com>",
        extra_headers=[
            ("TLS-Report-Domain", "example.com"),
            ("TLS-Report-Submitter", "google.com"),
        ],
    )
    [att] = find_reports(raw)
    assert (att.name, att.content_type, att.data) == (name, media, data)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "t.duckdb")
    yield s  # type: ignore[misc]
    s.close()


def _inputs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    (d / "google.json.gz").write_bytes(gzipped(google_style()))
    mail = report_mail(
        gzipped(microsoft_style()),
        name="microsoft.com!example.com!1778112000!1778198400.json.gz",
        content_type="application/tlsrpt+gzip",
    )
    (d / "ms.eml").write_bytes(mail)
    return d


def test_reports_land_in_the_views(store: Store, tmp_path: Path) -> None:
    res = ingest_reports(store, [_inputs(tmp_path)], now=lambda: NOW)
    assert (res.tlsrpt_reports, res.tlsrpt_failures, res.quarantined) == (2, 3, 0)
    assert store.con.execute(
        "SELECT reporter, policies, successful_sessions, failed_sessions FROM tlsrpt_reports ORDER BY 1"
    ).fetchall() == [("Google Inc.", 1, 5326, 303), ("Microsoft Corporation", 2, 50, 2)]
    assert store.con.execute(
        "SELECT policy_type, policy_domain, result_type, sending_mta_ip, receiving_mx_hostname, "
        "failed_session_count FROM tlsrpt_failures ORDER BY failed_session_count DESC"
    ).fetchall() == [
        ("sts", "example.com", "certificate-expired", "209.85.220.41", "mx1.example.com", 300),
        ("sts", "example.com", "starttls-not-supported", "209.85.220.42", "mx2.example.com", 3),
        ("sts", "example.com", "validation-failure", "40.107.1.1", "mx1.example.com", 2),
    ]
    assert store.con.execute(
        "SELECT policy_domain, policy_type FROM tlsrpt_policies ORDER BY 1"
    ).fetchall() == [
        ("example.com", "sts"),
        ("example.com", "sts"),
        ("example.org", "no-policy-found"),
    ]
    # duplicates: the same reports again, and the Google one once more under another name
    (tmp_path / "copy.json").write_bytes(google_style())
    again = ingest_reports(store, [tmp_path / "in", tmp_path / "copy.json"], now=lambda: NOW)
    assert (again.tlsrpt_reports, again.duplicates) == (0, 3)
    assert store.con.execute("SELECT count(*) FROM tlsrpt_failure_log").fetchall() == [(3,)]


def test_report_section_per_policy(store: Store, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from mtalens.pipeline.reports import report

    ingest_reports(store, [_inputs(tmp_path)], now=lambda: NOW)
    (t,) = report(store, since=datetime(1970, 1, 1, tzinfo=UTC),
                  until=datetime(9999, 1, 1, tzinfo=UTC), sections=("tlsrpt_results",))  # fmt: skip
    rows = {(r["policy_domain"], r["policy_type"]): r for r in t.records()}
    sts = rows[("example.com", "sts")]
    # the sts policy of both reports: the sessions summed over them, the failures' types listed
    assert sts["failed_sessions"] == 305 and sts["failure_types"] == [
        "certificate-expired", "starttls-not-supported", "validation-failure"]  # fmt: skip
    total = sts["successful_sessions"] + sts["failed_sessions"]  # type: ignore[operator]
    assert sts["failed_pct"] == round(100 * 305 / total, 2)
    assert next(iter(rows)) == ("example.com", "sts")  # the most failures first


def test_broken_report_is_quarantined(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzipped(b'{"organization-name": "x", "policies": [], "date-range": 5}'))
    res = ingest_reports(store, [bad], now=lambda: NOW)
    assert (res.tlsrpt_reports, res.quarantined) == (0, 1)
    assert store.con.execute("SELECT source_kind, reason FROM quarantine").fetchall() == [
        ("report", "tlsrpt-bad-value")
    ]


def test_diagnose_names_tls_failures_by_mx_and_result(tmp_path: Path) -> None:
    db = tmp_path / "d.duckdb"
    with Store.open(db) as s:
        ingest_reports(s, [_inputs(tmp_path)], now=lambda: NOW)
    with Store.open(db, read_only=True) as s:
        found = {f.id: f for f in diagnose(Context(store=s, since=EPOCH, until=FAR_FUTURE))}
    expired = found["tlsrpt-failures:example.com/mx1.example.com/certificate-expired"]
    assert expired.severity is Severity.CRITICAL  # enforced MTA-STS: senders refuse to deliver
    assert expired.evidence.count == 300
    assert "Renew" in expired.remedy and "mtalens dns check example.com" in expired.remedy
    assert expired.evidence.fact("successful_sessions") == 5336
    starttls = found["tlsrpt-failures:example.com/mx2.example.com/starttls-not-supported"]
    assert starttls.evidence.count == 3 and "STARTTLS" in starttls.remedy
    validation = found["tlsrpt-failures:example.com/mx1.example.com/validation-failure"]
    assert "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT" in validation.remedy
    # outside the reports' dates nothing is found
    with Store.open(db, read_only=True) as s:
        later = diagnose(Context(store=s, since=datetime(2026, 6, 1, tzinfo=UTC), until=FAR_FUTURE))
    assert [f for f in later if f.problem == "tlsrpt-failures"] == []


def test_testing_mode_failures_are_warnings(tmp_path: Path) -> None:
    doc = tlsrpt_json(
        org="Yahoo",
        report_id="y-1",
        policies=[
            tls_policy(
                mode="testing",
                failed=7,
                failures=[
                    failure("sts-policy-invalid", ip="98.137.1.1", mx="mx1.example.com", n=7)
                ],
            )
        ],
    )
    (tmp_path / "y.json").write_bytes(doc)
    db = tmp_path / "y.duckdb"
    res = runner.invoke(app, ["reports", "ingest", "--db", str(db), str(tmp_path / "y.json")])
    assert res.exit_code == 0, res.output
    assert "TLS-RPT reports 1 (1 failure rows)" in res.stdout
    res = runner.invoke(
        app, ["diagnose", "--db", str(db), "--since", "2026-01-01", "--format", "json"]
    )
    [f] = [f for f in json.loads(res.stdout) if f["problem"] == "tlsrpt-failures"]
    assert f["severity"] == "warning" and "mta-sts" in f["remedy"].lower()
