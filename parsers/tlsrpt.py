"""SMTP TLS reports (TLS-RPT), RFC 8460 section 4: one JSON object per report.

Read: ``organization-name``, ``date-range`` (``start-datetime``/``end-datetime``, RFC 3339),
``contact-info``, ``report-id`` and ``policies``; each policy's ``policy`` (``policy-type`` tlsa,
sts or no-policy-found, ``policy-string``, ``policy-domain``, ``mx-host``), ``summary``
(``total-successful-session-count``, ``total-failure-session-count``) and ``failure-details``
(``result-type``, ``sending-mta-ip``, ``receiving-mx-hostname``, ``receiving-mx-helo``,
``receiving-ip``, ``failed-session-count``, ``additional-information``,
``failure-reason-code``), as laid out in section 4.4. Section 4.3 defines the result types
(IANA's "STARTTLS Validation Result Types" registry); unknown ones are kept as given. Optional members may be missing; unknown ones are
ignored. ``mx-host`` is a list in the RFC's example and a string in some reporters' output: both
are read.

JSON is parsed with the stdlib (RFC 8259: UTF-8; ``NaN``/``Infinity`` refused; nesting beyond
the interpreter's limit is a ``ParseError``, never a ``RecursionError``).

Samples: tests/test_tlsrpt.py writes reports in the layouts of several reporters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from mtalens.parsers.errors import ParseError

MAX_TEXT: Final = 4096

# RFC 8460 section 4.3.1 (negotiation), 4.3.2.1 (DANE) and 4.3.2.2 (MTA-STS) result types
RESULT_TYPES: Final = frozenset(
    {
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    }
)
POLICY_TYPES: Final = frozenset({"tlsa", "sts", "no-policy-found"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFailure:
    result_type: str
    sending_mta_ip: str | None
    receiving_mx_hostname: str | None
    receiving_mx_helo: str | None
    receiving_ip: str | None
    failed_session_count: int
    additional_information: str | None
    failure_reason_code: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsPolicy:
    policy_type: str
    policy_domain: str
    policy_string: tuple[str, ...]
    mx_hosts: tuple[str, ...]
    successful_sessions: int
    failed_sessions: int
    failures: tuple[TlsFailure, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsReport:
    organization_name: str
    report_id: str
    contact_info: str | None
    begin: datetime
    end: datetime
    policies: tuple[TlsPolicy, ...]


def _refuse_constant(name: str) -> Any:
    raise ParseError("bad-json", f"{name} is not JSON (RFC 8259 section 6)")


def _obj(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ParseError("tlsrpt-bad-value", f"{what} is not an object")
    return v


def _str(d: dict[str, Any], key: str, what: str, *, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise ParseError("tlsrpt-missing-field", f"{what}.{key} is missing")
        return None
    if not isinstance(v, str):
        raise ParseError("tlsrpt-bad-value", f"{what}.{key} is not a string")
    v = v.strip()[:MAX_TEXT]
    if required and not v:
        raise ParseError("tlsrpt-missing-field", f"{what}.{key} is empty")
    return v or None


def _req(d: dict[str, Any], key: str, what: str) -> str:
    v = _str(d, key, what, required=True)
    assert v is not None
    return v


def _count(d: dict[str, Any], key: str, what: str, *, required: bool) -> int:
    v = d.get(key)
    if v is None:
        if required:
            raise ParseError("tlsrpt-missing-field", f"{what}.{key} is missing")
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ParseError("tlsrpt-bad-value", f"{what}.{key} is not a count: {str(v)[:40]!r}")
    return v


def _strings(v: Any, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v.strip(),) if v.strip() else ()
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return tuple(x.strip()[:MAX_TEXT] for x in v if x.strip())
    raise ParseError("tlsrpt-bad-value", f"{what} is not a string or list of strings")


def _datetime(d: dict[str, Any], key: str) -> datetime:
    text = _req(d, key, "date-range")
    try:
        dt = datetime.fromisoformat(text)  # RFC 3339 date-time; Python 3.11 reads "Z"
    except ValueError:
        raise ParseError("tlsrpt-bad-value", f"date-range.{key}: {text[:40]!r}") from None
    if dt.tzinfo is None:  # RFC 3339 requires an offset; read a bare one as UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _host(v: str | None) -> str | None:
    return v.rstrip(".").lower() or None if v else None


def _failure(v: Any, where: str) -> TlsFailure:
    d = _obj(v, where)
    return TlsFailure(
        result_type=_req(d, "result-type", where).lower(),
        sending_mta_ip=_str(d, "sending-mta-ip", where),
        receiving_mx_hostname=_host(_str(d, "receiving-mx-hostname", where)),
        receiving_mx_helo=_host(_str(d, "receiving-mx-helo", where)),
        receiving_ip=_str(d, "receiving-ip", where),
        failed_session_count=_count(d, "failed-session-count", where, required=True),
        additional_information=_str(d, "additional-information", where),
        failure_reason_code=_str(d, "failure-reason-code", where),
    )


def _policy(v: Any, i: int) -> TlsPolicy:
    where = f"policies[{i}]"
    entry = _obj(v, where)
    pol = _obj(entry.get("policy"), f"{where}.policy")
    summary = _obj(entry.get("summary"), f"{where}.summary")
    details = entry.get("failure-details") or []
    if not isinstance(details, list):
        raise ParseError("tlsrpt-bad-value", f"{where}.failure-details is not a list")
    return TlsPolicy(
        policy_type=_req(pol, "policy-type", f"{where}.policy").lower(),
        policy_domain=_host(_req(pol, "policy-domain", f"{where}.policy")) or "",
        policy_string=_strings(pol.get("policy-string"), f"{where}.policy.policy-string"),
        mx_hosts=tuple(h.lower() for h in _strings(pol.get("mx-host"), f"{where}.policy.mx-host")),
        successful_sessions=_count(
            summary, "total-successful-session-count", f"{where}.summary", required=True
        ),
        failed_sessions=_count(
            summary, "total-failure-session-count", f"{where}.summary", required=True
        ),
        failures=tuple(_failure(f, f"{where}.failure-details[{j}]") for j, f in enumerate(details)),
    )


def looks_like_tlsrpt(head: bytes) -> bool:
    """A JSON object (after a BOM and white space): what section 4 reports are."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{"


def parse_tlsrpt(data: bytes) -> TlsReport:
    """One RFC 8460 report. Only ``ParseError`` escapes."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError("bad-json", f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ParseError("bad-json", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ParseError("bad-json", "nested too deeply") from None
    d = _obj(doc, "report")
    if "organization-name" not in d and "policies" not in d:
        raise ParseError("not-tlsrpt", "JSON without organization-name or policies")
    dr = _obj(d.get("date-range"), "date-range")
    begin, end = _datetime(dr, "start-datetime"), _datetime(dr, "end-datetime")
    if end < begin:
        raise ParseError("tlsrpt-bad-value", "date-range ends before it starts")
    policies = d.get("policies")
    if not isinstance(policies, list):
        raise ParseError("tlsrpt-missing-field", "policies is missing or not a list")
    return TlsReport(
        organization_name=_req(d, "organization-name", "report"),
        report_id=_req(d, "report-id", "report"),
        contact_info=_str(d, "contact-info", "report"),
        begin=begin,
        end=end,
        policies=tuple(_policy(p, i) for i, p in enumerate(policies)),
    )
