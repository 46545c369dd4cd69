"""DMARC aggregate reports (XML): RFC 7489 Appendix C and DMARCbis.

Formats read:

- RFC 7489 Appendix C (``<feedback>`` without a namespace, or with the pre-RFC
  ``http://dmarc.org/dmarc-xml/0.1``), as sent by the large receivers; their layouts differ in
  element order, in which optional elements they include (``version``, ``extra_contact_info``,
  ``error``, ``fo``, ``pct``, ``envelope_from``/``envelope_to``, DKIM ``selector`` and
  ``human_result``, SPF ``scope``, ``reason``) and in whitespace.
- DMARCbis aggregate reporting (draft-ietf-dmarc-aggregate-reporting, namespace
  ``urn:ietf:params:xml:ns:dmarc-2.0``): adds ``generator`` to the metadata, ``np``,
  ``testing`` and ``discovery_method`` to the published policy (``pct`` is gone),
  ``envelope_from`` becomes required and ``extension`` elements may appear.

Element order inside each element is free (the 7489 schema uses ``xs:all`` for several types
and reporters do not follow the ``xs:sequence`` ones either); unknown elements are ignored.

Safety: a DOCTYPE (and with it any ENTITY) declaration is refused before the XML parser sees it
(:class:`DeclarationGate` scans the raw bytes; section 2.8 of XML 1.0 allows declarations only
there), so no entity is expanded and nothing external is fetched. Only ASCII-compatible
encodings are accepted, so the byte scan cannot be dodged with UTF-16.

Streaming: ``parse_aggregate`` takes byte chunks and yields the report's head
(:class:`DmarcReport`: metadata and published policy) then each :class:`DmarcRecord`, clearing
parsed elements, so a 100 MB report is read in bounded memory. Only ``ParseError`` escapes.

Samples: tests/test_dmarc.py writes reports in the layouts of several reporters.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Final

from mtalens.parsers.errors import ParseError

NS_DMARCBIS: Final = "urn:ietf:params:xml:ns:dmarc-2.0"
NS_DMARC_01: Final = "http://dmarc.org/dmarc-xml/0.1"  # pre-RFC drafts; some reporters keep it

# Records buffered when a reporter writes them before the metadata (never seen; allowed by the
# free order): past this many, the report is refused rather than held in memory.
MAX_EARLY_RECORDS: Final = 10_000
MAX_TEXT: Final = 4096  # characters kept of one element's text
WHOLE_REPORT: Final = 4 << 20  # bytes of XML parsed in one go; larger reports stream


class ReportFormat(StrEnum):
    RFC7489 = "rfc7489"
    DMARCBIS = "dmarcbis"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyPublished:
    """RFC 7489 Appendix C ``PolicyPublishedType`` / DMARCbis: the DMARC record the receiver
    found for the domain."""

    domain: str
    p: str | None
    sp: str | None = None
    pct: int | None = None  # RFC 7489 only
    adkim: str | None = None  # r | s (RFC 7489 section 6.3)
    aspf: str | None = None
    fo: str | None = None
    np: str | None = None  # DMARCbis: policy for non-existent subdomains
    testing: str | None = None  # DMARCbis: y | n
    discovery_method: str | None = None  # DMARCbis: psl | treewalk


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcReport:
    """The head of one aggregate report: who reports, which period, which policy."""

    format: ReportFormat
    version: str | None
    org_name: str
    email: str | None
    extra_contact_info: str | None
    report_id: str
    begin: datetime
    end: datetime
    errors: tuple[str, ...]
    generator: str | None
    policy: PolicyPublished


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimResult:
    domain: str | None
    selector: str | None
    result: str | None  # none, pass, fail, policy, neutral, temperror, permerror
    human_result: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpfResult:
    domain: str | None
    scope: str | None  # helo | mfrom
    result: str | None  # none, neutral, pass, fail, softfail, temperror, permerror
    human_result: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyOverride:
    """``PolicyOverrideReason``: why the disposition differs from the policy (forwarded,
    sampled_out, trusted_forwarder, mailing_list, local_policy, other)."""

    type: str | None
    comment: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcRecord:
    """One ``record``: ``count`` messages from ``source_ip`` with the same identifiers and
    results. ``dkim``/``spf`` are the policy-evaluated results, i.e. pass only when aligned with
    ``header_from`` (RFC 7489 section 3.1); ``dkim_results``/``spf_results`` are the raw
    authentication results with the domains actually checked."""

    source_ip: str
    count: int
    disposition: str
    dkim: str | None
    spf: str | None
    reasons: tuple[PolicyOverride, ...]
    header_from: str | None
    envelope_from: str | None
    envelope_to: str | None
    dkim_results: tuple[DkimResult, ...]
    spf_results: tuple[SpfResult, ...]


# --------------------------------------------------------------------------------------------
# Refusing declarations before parsing


_ENCODING_RE: Final = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
# Encodings in which "<!DOCTYPE" is the same bytes as in ASCII (so the gate sees it).
_ASCII_COMPATIBLE: Final = re.compile(
    r"^(utf-?8|us-ascii|ascii|iso[-_]?8859-\d{1,2}|latin-?1|windows-125\d|cp125\d)$", re.I
)
_BOMS: Final = (b"\xfe\xff", b"\xff\xfe", b"\x00\x00\xfe\xff", b"\x00\x00\x00<", b"\x00<")


class DeclarationGate:
    """Scans the raw bytes, chunk by chunk, for markup declarations (``<!`` not starting a
    comment or a CDATA section): DOCTYPE, ENTITY, ELEMENT, ATTLIST, NOTATION. XML 1.0 section
    2.8 allows them only in a document type declaration, which an aggregate report never has.
    A ``<!DOCTYPE`` inside a comment or CDATA section is refused as well: erring on the safe
    side. The first bytes must be an ASCII-compatible encoding (XML 1.0 section 4.3.3 and
    Appendix F: a BOM or the XML declaration names it)."""

    _LEADS: Final = (b"--", b"[CDATA[")

    def __init__(self) -> None:
        self._tail = b""
        self._encoding_checked = False

    def check(self, chunk: bytes, *, final: bool = False) -> None:
        data = self._tail + chunk
        self._tail = b""
        if not self._encoding_checked and (len(data) >= 64 or final):
            self._check_encoding(data)
        pos = 0
        while True:
            at = data.find(b"<!", pos)
            if at < 0:
                break
            after = data[at + 2 : at + 9]
            if after.startswith(self._LEADS):
                pos = at + 2
                continue
            if not final and len(after) < 7 and any(lead.startswith(after) for lead in self._LEADS):
                self._tail = data[at:]  # too few bytes to tell: judge with the next chunk
                return
            word = re.match(rb"[A-Za-z]*", after)
            name = word.group(0).decode("ascii") if word and word.group(0) else "<!"
            raise ParseError(
                "xml-declaration-refused",
                f"markup declaration {name} refused (no DOCTYPE/ENTITY in reports)",
            )
        if data.endswith(b"<"):
            self._tail = b"<"

    def _check_encoding(self, data: bytes) -> None:
        self._encoding_checked = True
        if data.startswith(_BOMS) or b"\x00" in data[:4]:
            raise ParseError("xml-encoding-refused", "UTF-16/UTF-32 reports are not accepted")
        m = _ENCODING_RE.match(data.removeprefix(b"\xef\xbb\xbf")[:512])
        if m and not _ASCII_COMPATIBLE.match(m.group(1).decode("ascii")):
            raise ParseError(
                "xml-encoding-refused",
                f"encoding {m.group(1).decode('ascii')!r} is not ASCII-compatible",
            )


# --------------------------------------------------------------------------------------------
# Element helpers


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :] if tag[:1] == "{" else tag


def _ns(tag: str) -> str:
    return tag[1 : tag.find("}")] if tag[:1] == "{" else ""


def _text(el: ET.Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    t = el.text.strip()
    return t[:MAX_TEXT] if t else None


def _kids(el: ET.Element) -> dict[str, list[ET.Element]]:
    out: dict[str, list[ET.Element]] = {}
    for child in el:
        out.setdefault(_local(child.tag), []).append(child)
    return out


def _one(kids: dict[str, list[ET.Element]], name: str) -> ET.Element | None:
    found = kids.get(name)
    return found[0] if found else None


def _str(kids: dict[str, list[ET.Element]], name: str) -> str | None:
    return _text(_one(kids, name))


def _lower(kids: dict[str, list[ET.Element]], name: str) -> str | None:
    t = _str(kids, name)
    return t.lower() if t else None


def _domain(value: str | None) -> str | None:
    return value.strip().rstrip(".").lower() or None if value else None


def _require(value: str | None, what: str) -> str:
    if not value:
        raise ParseError("dmarc-missing-field", f"{what} is missing or empty")
    return value


def _int(value: str | None, what: str) -> int:
    if value is None:
        raise ParseError("dmarc-missing-field", f"{what} is missing")
    try:
        return int(value)
    except ValueError:
        try:  # "1715040000.0" from some generators
            f = float(value)
        except ValueError:
            raise ParseError("dmarc-bad-value", f"{what}: {value[:40]!r} is not a number") from None
        if not f.is_integer():
            raise ParseError(
                "dmarc-bad-value", f"{what}: {value[:40]!r} is not an integer"
            ) from None
        return int(f)


def _epoch(value: str | None, what: str) -> datetime:
    # RFC 7489 Appendix C, DateRangeType: "seconds since epoch", UTC
    secs = _int(value, what)
    try:
        return datetime.fromtimestamp(secs, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ParseError("dmarc-bad-value", f"{what}: {secs} is out of range") from None


# --------------------------------------------------------------------------------------------
# The parts of a report


@dataclass(frozen=True, slots=True, kw_only=True)
class _Metadata:
    org_name: str
    email: str | None
    extra_contact_info: str | None
    report_id: str
    begin: datetime
    end: datetime
    errors: tuple[str, ...]
    generator: str | None


def _metadata(el: ET.Element) -> _Metadata:
    k = _kids(el)
    dr = _one(k, "date_range")
    if dr is None:
        raise ParseError("dmarc-missing-field", "report_metadata/date_range is missing")
    dk = _kids(dr)
    begin = _epoch(_str(dk, "begin"), "date_range/begin")
    end = _epoch(_str(dk, "end"), "date_range/end")
    if end < begin:
        raise ParseError("dmarc-bad-value", "date_range ends before it begins")
    return _Metadata(
        org_name=_require(_str(k, "org_name"), "report_metadata/org_name"),
        email=_str(k, "email"),
        extra_contact_info=_str(k, "extra_contact_info"),
        report_id=_require(_str(k, "report_id"), "report_metadata/report_id"),
        begin=begin,
        end=end,
        errors=tuple(t for e in k.get("error", ()) if (t := _text(e))),
        generator=_str(k, "generator"),
    )


def _policy(el: ET.Element) -> PolicyPublished:
    k = _kids(el)
    pct = _str(k, "pct")
    return PolicyPublished(
        domain=_require(_domain(_str(k, "domain")), "policy_published/domain"),
        p=_lower(k, "p"),
        sp=_lower(k, "sp"),
        pct=_int(pct, "policy_published/pct") if pct is not None else None,
        adkim=_lower(k, "adkim"),
        aspf=_lower(k, "aspf"),
        fo=_str(k, "fo"),
        np=_lower(k, "np"),
        testing=_lower(k, "testing"),
        discovery_method=_lower(k, "discovery_method"),
    )


@dataclass(frozen=True, slots=True)
class _Tags:
    """Qualified names of a record's elements in one namespace: ``Element.find`` with a plain
    (namespace-qualified) tag runs in C, which keeps a million records affordable."""

    row: str
    source_ip: str
    count: str
    policy_evaluated: str
    disposition: str
    dkim: str
    spf: str
    reason: str
    type: str
    comment: str
    identifiers: str
    header_from: str
    envelope_from: str
    envelope_to: str
    auth_results: str
    domain: str
    selector: str
    result: str
    human_result: str
    scope: str


@cache
def _tags(ns: str) -> _Tags:
    q = (lambda n: f"{{{ns}}}{n}") if ns else (lambda n: n)
    return _Tags(*(q(f.name) for f in fields(_Tags)))


def _clean(text: str | None) -> str | None:
    if not text:
        return None
    t = text.strip()
    return t[:MAX_TEXT] if t else None


def _low(text: str | None) -> str | None:
    t = _clean(text)
    return t.lower() if t else None


def _ip(text: str | None) -> str:
    t = _require(_clean(text), "row/source_ip")
    try:
        if ":" not in t:
            socket.inet_pton(socket.AF_INET, t)  # dotted quad as written is canonical
            return t
        return str(ipaddress.ip_address(t))  # IPv6: the compressed lower-case form
    except (OSError, ValueError):
        raise ParseError("dmarc-bad-value", f"row/source_ip: {t[:60]!r}") from None


def _record(el: ET.Element) -> DmarcRecord:
    """RFC 7489 Appendix C ``RecordType`` (DMARCbis the same plus ``extension``)."""
    t = _tags(_ns(el.tag))
    row = el.find(t.row)
    if row is None:
        raise ParseError("dmarc-missing-field", "record/row is missing")
    ip = _ip(row.findtext(t.source_ip))
    count = _int(_clean(row.findtext(t.count)), "row/count")
    if count < 0:
        raise ParseError("dmarc-bad-value", f"row/count: {count}")
    pe = row.find(t.policy_evaluated)
    if pe is None:
        raise ParseError("dmarc-missing-field", "row/policy_evaluated is missing")
    reasons = tuple(
        [
            PolicyOverride(type=_low(r.findtext(t.type)), comment=_clean(r.findtext(t.comment)))
            for r in pe.findall(t.reason)
        ]
    )
    ident = el.find(t.identifiers)
    header_from = envelope_from = envelope_to = None
    if ident is not None:
        header_from = _domain(ident.findtext(t.header_from))
        envelope_from = _domain(ident.findtext(t.envelope_from))
        envelope_to = _domain(ident.findtext(t.envelope_to))
    dkims: tuple[DkimResult, ...] = ()
    spfs: tuple[SpfResult, ...] = ()
    auth = el.find(t.auth_results)
    if auth is not None:
        dkims = tuple(
            [
                DkimResult(
                    domain=_domain(d.findtext(t.domain)),
                    selector=_clean(d.findtext(t.selector)),
                    result=_low(d.findtext(t.result)),
                    human_result=_clean(d.findtext(t.human_result)),
                )
                for d in auth.findall(t.dkim)
            ]
        )
        spfs = tuple(
            [
                SpfResult(
                    domain=_domain(x.findtext(t.domain)),
                    scope=_low(x.findtext(t.scope)),
                    result=_low(x.findtext(t.result)),
                    human_result=_clean(x.findtext(t.human_result)),
                )
                for x in auth.findall(t.spf)
            ]
        )
    return DmarcRecord(
        source_ip=ip,
        count=count,
        disposition=_require(_low(pe.findtext(t.disposition)), "policy_evaluated/disposition"),
        dkim=_low(pe.findtext(t.dkim)),
        spf=_low(pe.findtext(t.spf)),
        reasons=reasons,
        header_from=header_from,
        envelope_from=envelope_from,
        envelope_to=envelope_to,
        dkim_results=dkims,
        spf_results=spfs,
    )


# --------------------------------------------------------------------------------------------
# The streaming parser


def _format_of(root_tag: str) -> ReportFormat:
    ns = _ns(root_tag)
    if ns == NS_DMARCBIS:
        return ReportFormat.DMARCBIS
    if ns in ("", NS_DMARC_01):
        return ReportFormat.RFC7489
    raise ParseError("not-dmarc", f"root element in unknown namespace {ns[:80]!r}")


@dataclass(slots=True)
class _Report:
    """What is known so far about the report being parsed."""

    fmt: ReportFormat = ReportFormat.RFC7489
    version: str | None = None
    meta: _Metadata | None = None
    policy: PolicyPublished | None = None
    head: DmarcReport | None = None
    early: list[DmarcRecord] = field(default_factory=list)

    def take(self, children: list[ET.Element]) -> Iterator[DmarcReport | DmarcRecord]:
        """The root's children that are complete, in document order."""
        for el in children:
            name = _local(el.tag)
            if name == "record":
                rec = _record(el)
                if self.head is None and self.meta is not None and self.policy is not None:
                    # the head goes out with the first record, so a <version> written anywhere
                    # before the records is part of it
                    self.head = _head(self.fmt, self.version, self.meta, self.policy)
                    yield self.head
                    yield from self.early
                    self.early = []
                if self.head is not None:
                    yield rec
                    continue
                self.early.append(rec)
                if len(self.early) > MAX_EARLY_RECORDS:
                    raise ParseError(
                        "dmarc-records-before-metadata",
                        f"more than {MAX_EARLY_RECORDS} records before report_metadata",
                    )
            elif name == "report_metadata":
                if self.meta is not None:
                    raise ParseError("dmarc-bad-value", "two report_metadata elements")
                self.meta = _metadata(el)
            elif name == "policy_published":
                if self.policy is not None:
                    raise ParseError("dmarc-bad-value", "two policy_published elements")
                self.policy = _policy(el)
            elif name == "version":
                self.version = _text(el)

    def finish(self) -> Iterator[DmarcReport | DmarcRecord]:
        if self.meta is None:
            raise ParseError("dmarc-missing-field", "report_metadata is missing")
        if self.policy is None:
            raise ParseError("dmarc-missing-field", "policy_published is missing")
        if self.head is None:  # no records, or all of them before the metadata
            yield _head(self.fmt, self.version, self.meta, self.policy)
            yield from self.early


def _report_of(root: ET.Element) -> _Report:
    if _local(root.tag) != "feedback":
        raise ParseError("not-dmarc", f"root element is <{_local(root.tag)[:40]}>")
    return _Report(fmt=_format_of(root.tag))


def parse_aggregate(chunks: Iterable[bytes]) -> Iterator[DmarcReport | DmarcRecord]:
    """One aggregate report, streamed: its :class:`DmarcReport` first, then every
    :class:`DmarcRecord`. Raises ``ParseError`` (possibly after some records were yielded: a
    caller stores a report only once the iterator is exhausted).

    A report of up to ``WHOLE_REPORT`` bytes (nearly all of them) is parsed in one go by the C
    tree builder. A larger one streams: after each chunk, the root's children that are complete
    (all but the last, which may still be open) are read and removed, so the tree never holds
    more than a chunk's worth of records; an element factory remembers the root (the first
    element created), at the price of one Python call per element."""
    gate = DeclarationGate()
    it = iter(chunks)
    head: list[bytes] = []
    size = 0
    for chunk in it:
        if not chunk:
            continue
        gate.check(chunk)
        head.append(chunk)
        size += len(chunk)
        if size > WHOLE_REPORT:
            break
    else:
        if not head:
            raise ParseError("bad-xml", "empty report")
        gate.check(b"", final=True)
        try:
            whole = ET.XMLParser(target=ET.TreeBuilder())
            for chunk in head:
                whole.feed(chunk)
            root = whole.close()
        except ET.ParseError as exc:
            raise ParseError("bad-xml", str(exc)) from None
        report = _report_of(root)
        yield from report.take(list(root))
        yield from report.finish()
        return
    yield from _streamed(head, it, gate)


def _streamed(
    head: list[bytes], rest: Iterator[bytes], gate: DeclarationGate
) -> Iterator[DmarcReport | DmarcRecord]:
    roots: list[ET.Element] = []

    def element(tag: str, attrib: dict[str, str]) -> ET.Element:
        el = ET.Element(tag, attrib)
        if not roots:
            roots.append(el)
        return el

    parser = ET.XMLParser(target=ET.TreeBuilder(element_factory=element))
    report: _Report | None = None
    root: ET.Element | None = None

    def chunks() -> Iterator[bytes]:
        yield from head  # already through the gate
        for chunk in rest:
            gate.check(chunk)
            yield chunk
        gate.check(b"", final=True)

    try:
        for chunk in chunks():
            parser.feed(chunk)
            if root is None and roots:
                root = roots[0]
                report = _report_of(root)
            if root is not None and report is not None and len(root) > 1:
                done = root[:-1]
                del root[:-1]
                yield from report.take(done)
        parser.close()
    except ET.ParseError as exc:
        raise ParseError("bad-xml", str(exc)) from None
    if root is None or report is None:
        raise ParseError("bad-xml", "no root element")
    yield from report.take(list(root))
    root.clear()
    yield from report.finish()


def _head(
    fmt: ReportFormat, version: str | None, meta: _Metadata, policy: PolicyPublished
) -> DmarcReport:
    return DmarcReport(
        format=fmt,
        version=version,
        org_name=meta.org_name,
        email=meta.email,
        extra_contact_info=meta.extra_contact_info,
        report_id=meta.report_id,
        begin=meta.begin,
        end=meta.end,
        errors=meta.errors,
        generator=meta.generator,
        policy=policy,
    )
