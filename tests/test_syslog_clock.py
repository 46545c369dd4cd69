"""The year RFC 3164 lines leave out (parsers/syslog.py SyslogClock, and the C scanner's copy
of it): year turns, late lines of the old year, gaps in the log, impossible dates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mtalens.parsers.lines import Malformed, Parsed, parse_line
from mtalens.parsers.syslog import SyslogClock
from tests.test_fastpath import _assert_same, _run_paths

LINE = "{} mx1 postfix/qmgr[42]: 4BC{:05X}: removed"


def stamps(*dates: str, year: int = 2025) -> list[datetime | str]:
    """What each line's timestamp resolves to, in order (else "Malformed:<code>")."""
    clock = SyslogClock(year=year, tz=UTC)
    out: list[datetime | str] = []
    for i, d in enumerate(dates):
        v = parse_line(LINE.format(d, i).encode(), clock)
        if isinstance(v, Parsed):
            out.append(v.envelope.logged_at)
        else:
            out.append(f"Malformed:{v.code}" if isinstance(v, Malformed) else f"Skipped:{v.rule}")
    return out


def at(y: int, mo: int, d: int, h: int = 0) -> datetime:
    return datetime(y, mo, d, h, tzinfo=UTC)


def test_the_year_turns_and_a_late_line_of_the_old_year_stays_there() -> None:
    got = stamps("Dec 31 23:59:00", "Jan  1 00:00:00", "Dec 31 23:59:59", "Jan  1 01:00:00")
    assert got[1] == at(2026, 1, 1) and got[3] == at(2026, 1, 1, 1)
    assert got[2] == datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)  # late, not next December


def test_a_gap_of_more_than_six_months_keeps_the_year() -> None:
    # a server silent from March to October: October is this year's, and so is what follows
    got = stamps("Mar  3 10:00:00", "Oct 10 10:00:00", "Oct 11 10:00:00", "Nov  1 00:00:00")
    assert got == [at(2025, 3, 3, 10), at(2025, 10, 10, 10), at(2025, 10, 11, 10), at(2025, 11, 1)]


def test_an_impossible_date_of_the_old_year_is_quarantined_not_a_bug() -> None:
    got = stamps("Jan  2 00:00:00", "Dec 32 00:00:00")
    assert got[1] == "Malformed:bad-timestamp"
    clock = SyslogClock(year=2025, tz=UTC)
    assert not isinstance(parse_line(LINE.format("Feb 30 00:00:00", 0).encode(), clock), Parsed)


def test_both_ingest_paths_read_the_same_year(tmp_path: Path) -> None:
    lines = [
        "Dec 31 23:59:00 mx1 postfix/qmgr[42]: 4BCDEF1: from=<a@example.org>, size=1, nrcpt=1 "
        "(queue active)",
        "Jan  1 00:00:01 mx1 postfix/qmgr[42]: 4BCDEF1: removed",
        "Dec 31 23:59:58 mx1 postfix/qmgr[42]: 4BCDEF2: removed",
        "Dec 32 23:59:58 mx1 postfix/qmgr[42]: 4BCDEF3: removed",
        "Jul  1 10:00:00 mx1 postfix/qmgr[42]: 4BCDEF4: from=<b@example.org>, size=1, nrcpt=1 "
        "(queue active)",
        "Jul  1 10:00:05 mx1 postfix/qmgr[42]: 4BCDEF4: removed",
    ]
    log = tmp_path / "mail.log"
    log.write_text("\n".join(lines) + "\n")
    pure, _ = _run_paths([log], fast=False, year=2025)
    fast, _ = _run_paths([log], fast=True, year=2025)
    _assert_same(pure, fast)
    stamps_seen = {v for r in pure["message_log"] for v in r if isinstance(v, datetime)}
    assert {(t.year, t.month) for t in stamps_seen} == {(2025, 12), (2026, 1), (2026, 7)}
    # July is 2026's, not the old year's; the impossible December 32 is quarantined
    assert [r[3] for r in pure["quarantine"]] == ["bad-timestamp"]


def test_the_hour_repeated_when_dst_ends_goes_on_monotonically(tmp_path: Path) -> None:
    """Europe/Berlin, 2025-10-26: 02:00-02:59 CEST (UTC+2) is followed by 02:00-02:59 CET
    (UTC+1). RFC 3164 lines say "02:30" twice; the second time is an hour later in UTC."""
    from zoneinfo import ZoneInfo

    clock = SyslogClock(year=2025, tz=ZoneInfo("Europe/Berlin"))
    seen = []
    for d in ("Oct 26 01:59:00", "Oct 26 02:30:00", "Oct 26 02:59:30", "Oct 26 02:55:10",
              "Oct 26 02:05:00", "Oct 26 02:30:00", "Oct 26 02:59:59", "Oct 26 03:00:00"):  # fmt: skip
        v = parse_line(LINE.format(d, len(seen)).encode(), clock)
        assert isinstance(v, Parsed)
        seen.append(v.envelope.logged_at.strftime("%H:%M:%S"))
    # the first pass (one line a little out of order stays in it), then the second pass
    assert seen == ["23:59:00", "00:30:00", "00:59:30", "00:55:10",
                    "01:05:00", "01:30:00", "01:59:59", "02:00:00"]  # fmt: skip
    # the C scanner asks the same clock: both ingest paths store the same times
    lines = [LINE.format(d, i) for i, d in enumerate(
        ("Oct 26 02:30:00", "Oct 26 02:59:00", "Oct 26 02:10:00", "Oct 26 02:40:00"))]  # fmt: skip
    log = tmp_path / "dst.log"
    log.write_text("\n".join(lines) + "\n")
    tz = ZoneInfo("Europe/Berlin")
    pure, _ = _run_paths([log], fast=False, year=2025, tz=tz)
    fast, _ = _run_paths([log], fast=True, year=2025, tz=tz)
    _assert_same(pure, fast)
