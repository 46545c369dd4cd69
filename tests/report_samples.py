"""DMARC aggregate and TLS-RPT reports written for the tests and the benchmark, in the layouts
receivers actually send (element order, optional elements, namespaces and wrapping differ):

- ``google``: no ``version``; metadata ``org_name, email, extra_contact_info, report_id,
  date_range``; policy ``domain, adkim, aspf, p, sp, pct, np``; record ``row, identifiers
  (header_from only), auth_results`` with DKIM ``domain, result, selector``; zipped.
- ``microsoft``: ``version`` first, ``xmlns:xsd``/``xmlns:xsi`` on the root, policy with
  ``fo``, identifiers ``envelope_to, envelope_from, header_from``, DKIM ``domain, selector,
  result``, SPF ``domain, scope, result``; gzipped.
- ``yahoo``: metadata with ``report_id`` before ``email``; policy without ``sp``/``fo``; DKIM
  with ``human_result``; plain XML with a UTF-8 BOM and CRLF line ends.
- ``mailru``: the pre-RFC namespace ``http://dmarc.org/dmarc-xml/0.1``, ``policy_published``
  before ``report_metadata`` and the children of every element in reverse schema order, an
  ``error`` element and policy override reasons.
- ``dmarcbis``: namespace ``urn:ietf:params:xml:ns:dmarc-2.0``, ``generator``, ``np``,
  ``testing``, ``discovery_method``, required ``envelope_from``, ``extension`` elements
  (one holding an element named ``record``, which must not be taken for a record).

Values are the caller's; the tests compare what the parser returns with what they put in.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Rec:
    ip: str
    count: int
    header_from: str = "example.com"
    disposition: str = "none"
    dkim: str = "pass"  # policy_evaluated (aligned)
    spf: str = "pass"
    envelope_from: str | None = None
    envelope_to: str | None = None
    dkim_auth: Sequence[tuple[str, str | None, str]] = ()  # (domain, selector, result)
    spf_auth: Sequence[tuple[str, str | None, str]] = ()  # (domain, scope, result)
    reasons: Sequence[tuple[str, str | None]] = ()  # (type, comment)


@dataclass(frozen=True)
class Report:
    org: str
    report_id: str
    begin: int
    end: int
    domain: str = "example.com"
    p: str = "none"
    sp: str | None = None
    pct: int | None = None
    adkim: str | None = None
    aspf: str | None = None
    email: str = "noreply-dmarc@reporter.example"
    records: Sequence[Rec] = field(default_factory=tuple)


def _e(tag: str, value: object | None) -> str:
    return "" if value is None else f"<{tag}>{escape(str(value))}</{tag}>"


def _join(parts: Sequence[str], reverse: bool = False) -> str:
    return "".join(reversed(parts) if reverse else parts)


def google(r: Report) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8" ?>\n<feedback>\n']
    out.append(
        "  <report_metadata>"
        + _e("org_name", r.org)
        + _e("email", r.email)
        + _e("extra_contact_info", "https://support.google.com/a/answer/2466580")
        + _e("report_id", r.report_id)
        + f"<date_range><begin>{r.begin}</begin><end>{r.end}</end></date_range>"
        + "</report_metadata>\n"
    )
    out.append(
        "  <policy_published>"
        + _e("domain", r.domain)
        + _e("adkim", r.adkim)
        + _e("aspf", r.aspf)
        + _e("p", r.p)
        + _e("sp", r.sp)
        + _e("pct", r.pct)
        + "</policy_published>\n"
    )
    for x in r.records:
        dk = "".join(
            f"<dkim>{_e('domain', d)}{_e('result', res)}{_e('selector', s)}</dkim>"
            for d, s, res in x.dkim_auth
        )
        sp = "".join(f"<spf>{_e('domain', d)}{_e('result', res)}</spf>" for d, _, res in x.spf_auth)
        reasons = "".join(
            f"<reason>{_e('type', t)}{_e('comment', c)}</reason>" for t, c in x.reasons
        )
        out.append(
            f"  <record>\n    <row>\n      <source_ip>{x.ip}</source_ip>\n"
            f"      <count>{x.count}</count>\n      <policy_evaluated>"
            f"{_e('disposition', x.disposition)}{_e('dkim', x.dkim)}{_e('spf', x.spf)}{reasons}"
            f"</policy_evaluated>\n    </row>\n"
            f"    <identifiers>{_e('header_from', x.header_from)}</identifiers>\n"
            f"    <auth_results>{dk}{sp}</auth_results>\n  </record>\n"
        )
    out.append("</feedback>\n")
    return "".join(out).encode()


def microsoft(r: Report) -> bytes:
    out = [
        '<?xml version="1.0"?>\r\n<feedback xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\r\n  <version>1.0</version>\r\n'
    ]
    out.append(
        "  <report_metadata>\r\n    "
        + _e("org_name", r.org)
        + _e("email", r.email)
        + _e("report_id", r.report_id)
        + f"<date_range><begin>{r.begin}</begin><end>{r.end}</end></date_range>"
        + "\r\n  </report_metadata>\r\n"
    )
    out.append(
        "  <policy_published>"
        + _e("domain", r.domain)
        + _e("adkim", r.adkim or "r")
        + _e("aspf", r.aspf or "r")
        + _e("p", r.p)
        + _e("sp", r.sp or r.p)
        + _e("pct", r.pct if r.pct is not None else 100)
        + _e("fo", "0")
        + "</policy_published>\r\n"
    )
    for x in r.records:
        dk = "".join(
            f"<dkim>{_e('domain', d)}{_e('selector', s)}{_e('result', res)}</dkim>"
            for d, s, res in x.dkim_auth
        )
        sp = "".join(
            f"<spf>{_e('domain', d)}{_e('scope', sc)}{_e('result', res)}</spf>"
            for d, sc, res in x.spf_auth
        )
        reasons = "".join(
            f"<reason>{_e('type', t)}{_e('comment', c)}</reason>" for t, c in x.reasons
        )
        out.append(
            "  <record>\r\n    <row>"
            f"{_e('source_ip', x.ip)}{_e('count', x.count)}<policy_evaluated>"
            f"{_e('disposition', x.disposition)}{_e('dkim', x.dkim)}{_e('spf', x.spf)}{reasons}"
            "</policy_evaluated></row>\r\n    <identifiers>"
            f"{_e('envelope_to', x.envelope_to)}{_e('envelope_from', x.envelope_from)}"
            f"{_e('header_from', x.header_from)}</identifiers>\r\n"
            f"    <auth_results>{dk}{sp}</auth_results>\r\n  </record>\r\n"
        )
    out.append("</feedback>\r\n")
    return "".join(out).encode()


def yahoo(r: Report) -> bytes:
    out = ['\ufeff<?xml version="1.0"?>\r\n<feedback>\r\n']
    out.append(
        "<report_metadata>"
        + _e("org_name", r.org)
        + _e("report_id", r.report_id)
        + _e("email", r.email)
        + f"<date_range>\r\n<begin>{r.begin}</begin>\r\n<end>{r.end}</end>\r\n</date_range>"
        + "</report_metadata>\r\n<policy_published>"
        + _e("domain", r.domain)
        + _e("adkim", r.adkim or "r")
        + _e("aspf", r.aspf or "r")
        + _e("p", r.p)
        + _e("pct", r.pct if r.pct is not None else 100)
        + "</policy_published>\r\n"
    )
    for x in r.records:
        dk = "".join(
            f"<dkim>{_e('domain', d)}{_e('selector', s)}{_e('result', res)}"
            f"{_e('human_result', 'sig ' + res)}</dkim>"
            for d, s, res in x.dkim_auth
        )
        sp = "".join(f"<spf>{_e('domain', d)}{_e('result', res)}</spf>" for d, _, res in x.spf_auth)
        out.append(
            f"<record>\r\n<row>\r\n<source_ip> {x.ip} </source_ip>\r\n<count> {x.count} </count>"
            f"\r\n<policy_evaluated>\r\n{_e('disposition', x.disposition)}\r\n"
            f"{_e('dkim', x.dkim)}\r\n{_e('spf', x.spf)}\r\n</policy_evaluated>\r\n</row>\r\n"
            f"<identifiers>{_e('header_from', x.header_from)}</identifiers>\r\n"
            f"<auth_results>{dk}{sp}</auth_results>\r\n</record>\r\n"
        )
    out.append("</feedback>\r\n")
    return "".join(out).encode()


def mailru(r: Report) -> bytes:
    """Pre-RFC namespace, and the children of every element in reverse schema order."""
    meta = _join(
        [
            _e("org_name", r.org),
            _e("email", r.email),
            _e("report_id", r.report_id),
            f"<date_range>{_join([_e('begin', r.begin), _e('end', r.end)], True)}</date_range>",
            _e("error", "record for example.net skipped: too large"),
        ],
        True,
    )
    pol = _join(
        [
            _e("domain", r.domain),
            _e("adkim", r.adkim),
            _e("aspf", r.aspf),
            _e("p", r.p),
            _e("sp", r.sp),
        ],
        True,
    )
    recs = []
    for x in r.records:
        reasons = "".join(
            f"<reason>{_join([_e('type', t), _e('comment', c)], True)}</reason>"
            for t, c in x.reasons
        )
        pe = _join(
            [_e("disposition", x.disposition), _e("dkim", x.dkim), _e("spf", x.spf), reasons], True
        )
        row = _join(
            [
                _e("source_ip", x.ip),
                _e("count", x.count),
                f"<policy_evaluated>{pe}</policy_evaluated>",
            ],
            True,
        )
        ident = _join(
            [_e("envelope_from", x.envelope_from), _e("header_from", x.header_from)], True
        )
        dk = "".join(
            f"<dkim>{_join([_e('domain', d), _e('selector', s), _e('result', res)], True)}</dkim>"
            for d, s, res in x.dkim_auth
        )
        sp = "".join(
            f"<spf>{_join([_e('domain', d), _e('scope', sc), _e('result', res)], True)}</spf>"
            for d, sc, res in x.spf_auth
        )
        recs.append(
            "<record>"
            + _join(
                [
                    f"<row>{row}</row>",
                    f"<identifiers>{ident}</identifiers>",
                    f"<auth_results>{sp}{dk}</auth_results>",
                ],
                True,
            )
            + "</record>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<feedback xmlns="http://dmarc.org/dmarc-xml/0.1">'
        f"<policy_published>{pol}</policy_published><report_metadata>{meta}</report_metadata>"
        + "".join(recs)
        + "</feedback>"
    ).encode()


def dmarcbis(r: Report, *, np: str = "reject", testing: str = "n") -> bytes:
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">\n  <version>1.0</version>\n'
        "  <report_metadata>"
        + _e("org_name", r.org)
        + _e("email", r.email)
        + _e("report_id", r.report_id)
        + f"<date_range><begin>{r.begin}</begin><end>{r.end}</end></date_range>"
        + _e("generator", "ExampleMTA 4.2")
        + "</report_metadata>\n  <policy_published>"
        + _e("domain", r.domain)
        + _e("p", r.p)
        + _e("sp", r.sp)
        + _e("np", np)
        + _e("adkim", r.adkim or "s")
        + _e("aspf", r.aspf or "r")
        + _e("discovery_method", "treewalk")
        + _e("testing", testing)
        + "</policy_published>\n"
        '  <extension><x:info xmlns:x="urn:example:ext"><x:record>not a record</x:record></x:info>'
        "</extension>\n"
    ]
    for x in r.records:
        dk = "".join(
            f"<dkim>{_e('domain', d)}{_e('selector', s)}{_e('result', res)}</dkim>"
            for d, s, res in x.dkim_auth
        )
        sp = "".join(
            f"<spf>{_e('domain', d)}{_e('scope', sc)}{_e('result', res)}</spf>"
            for d, sc, res in x.spf_auth
        )
        out.append(
            f"  <record><row>{_e('source_ip', x.ip)}{_e('count', x.count)}<policy_evaluated>"
            f"{_e('disposition', x.disposition)}{_e('dkim', x.dkim)}{_e('spf', x.spf)}"
            "</policy_evaluated></row><identifiers>"
            f"{_e('envelope_from', x.envelope_from or x.header_from)}"
            f"{_e('header_from', x.header_from)}</identifiers>"
            f"<auth_results>{dk}{sp}</auth_results><extension/></record>\n"
        )
    out.append("</feedback>\n")
    return "".join(out).encode()


LAYOUTS: dict[str, Callable[[Report], bytes]] = {
    "google": google,
    "microsoft": microsoft,
    "yahoo": yahoo,
    "mailru": mailru,
    "dmarcbis": dmarcbis,
}


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def filename(r: Report, ext: str) -> str:
    # RFC 7489 section 7.2.1.1: receiver "!" policy-domain "!" begin "!" end "." extension
    return f"{r.org}!{r.domain}!{r.begin}!{r.end}.{ext}"


def report_mail(
    attachment: bytes,
    *,
    name: str,
    content_type: str,
    subject: str = "Report domain: example.com Submitter: reporter.example",
    sender: str = "noreply-dmarc@reporter.example",
    extra_headers: Sequence[tuple[str, str]] = (),
    date: datetime | None = None,
) -> bytes:
    """A report email as receivers send it: a short text part and the report attached."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "dmarc-rua@example.com"
    msg["Subject"] = subject
    msg["Date"] = (date or datetime(2026, 5, 8, 6, 0)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = f"<{abs(hash((name, subject)))}@reporter.example>"
    for k, v in extra_headers:
        msg[k] = v
    msg.set_content("This is an aggregate report.\n")
    maintype, subtype = content_type.split("/", 1)
    msg.add_attachment(attachment, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def tlsrpt_json(
    *,
    org: str,
    report_id: str,
    start: str = "2026-05-07T00:00:00Z",
    end: str = "2026-05-07T23:59:59Z",
    policies: Sequence[dict[str, object]],
    contact: str | None = "smtp-tls-reporting@reporter.example",
) -> bytes:
    doc: dict[str, object] = {
        "organization-name": org,
        "date-range": {"start-datetime": start, "end-datetime": end},
        "report-id": report_id,
        "policies": list(policies),
    }
    if contact is not None:
        doc["contact-info"] = contact
    return json.dumps(doc, indent=2).encode()


def tls_policy(
    *,
    domain: str = "example.com",
    policy_type: str = "sts",
    mode: str = "enforce",
    mx: Sequence[str] = ("mx1.example.com",),
    ok: int = 100,
    failed: int = 0,
    failures: Sequence[dict[str, object]] = (),
    mx_as_string: bool = False,
) -> dict[str, object]:
    policy: dict[str, object] = {"policy-type": policy_type, "policy-domain": domain}
    if policy_type == "sts":
        policy["policy-string"] = [
            "version: STSv1",
            f"mode: {mode}",
            *(f"mx: {m}" for m in mx),
            "max_age: 86400",
        ]
        policy["mx-host"] = mx[0] if mx_as_string else list(mx)
    out: dict[str, object] = {
        "policy": policy,
        "summary": {"total-successful-session-count": ok, "total-failure-session-count": failed},
    }
    if failures:
        out["failure-details"] = list(failures)
    return out
