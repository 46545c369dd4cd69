"""mtalens.pipeline.mailbox: Maildir, mbox (From_ lines, >From quoting, CRLF), single files, offsets."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtalens.pipeline.mailbox import iter_messages

MSG_A = b"From: a@example.org\nSubject: one\n\nFrom here on\n>From quoted\n"
MSG_B = b"From: b@example.org\nSubject: two\n\nbody\n"


def test_mbox_split_offsets_and_unquoting(tmp_path: Path) -> None:
    a_quoted = MSG_A.replace(b"\nFrom here", b"\n>From here").replace(
        b">From quoted", b">>From quoted"
    )
    data = (
        b"From x@y Thu Jan  1 00:00:00 2026\n"
        + a_quoted
        + b"\nFrom z@y Thu Jan  1 00:00:01 2026\n"
        + MSG_B
    )
    p = tmp_path / "box"
    p.write_bytes(data)
    got = list(iter_messages([p]))
    assert [m.index for m in got] == [1, 2]
    assert got[0].raw == MSG_A
    assert got[1].raw == MSG_B
    for m in got:
        assert data[m.offset :].startswith(b"From: ")


def test_mbox_with_crlf(tmp_path: Path) -> None:
    a_quoted = MSG_A.replace(b"\nFrom here", b"\n>From here").replace(
        b">From quoted", b">>From quoted"
    )
    data = (
        b"From x@y Thu Jan  1 00:00:00 2026\n"
        + a_quoted
        + b"\nFrom z@y Thu Jan  1 00:00:01 2026\n"
        + MSG_B
    )
    p = tmp_path / "box"
    p.write_bytes(data.replace(b"\n", b"\r\n"))
    got = list(iter_messages([p]))
    assert len(got) == 2
    assert got[0].raw == MSG_A.replace(b"\n", b"\r\n")
    assert got[1].raw == MSG_B.replace(b"\n", b"\r\n")


def test_maildir_reads_new_then_cur_never_tmp(tmp_path: Path) -> None:
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "md" / sub).mkdir(parents=True)
    (tmp_path / "md" / "new" / "2").write_bytes(MSG_B)
    (tmp_path / "md" / "cur" / "1:2,S").write_bytes(MSG_A)
    (tmp_path / "md" / "tmp" / "3").write_bytes(b"partial")
    got = list(iter_messages([tmp_path / "md"]))
    assert [m.raw for m in got] == [MSG_B, MSG_A]
    assert all(m.index == 1 and m.offset == 0 for m in got)


def test_directory_of_eml_files_and_single_file(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.eml").write_bytes(MSG_B)
    (tmp_path / "d" / "sub" / "a.eml").write_bytes(MSG_A)
    got = list(iter_messages([tmp_path / "d", tmp_path / "d" / "b.eml"]))
    assert [Path(m.source).name for m in got] == ["b.eml", "a.eml", "b.eml"]


def test_mbox_from_line_without_blank_line_before_it(tmp_path: Path) -> None:
    # some writers put the next From_ line straight after the last body line; its asctime date
    # tells it apart from a body line starting with "From "
    data = (
        b"From x@y Thu Jan  1 00:00:00 2026\n" + MSG_B + b"From here on, body text\n"
        b"From z@y  Thu Jul  2 12:05:05 2020\n" + MSG_A.replace(b"\nFrom here", b"\n>From here")
    )
    p = tmp_path / "box"
    p.write_bytes(data)
    got = list(iter_messages([p]))
    assert [m.index for m in got] == [1, 2]
    assert got[0].raw == MSG_B + b"From here on, body text\n"
    assert got[1].raw.startswith(b"From: a@example.org")
    assert data[got[1].offset :].startswith(b"From: a@example.org")


def test_mbox_is_streamed_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mtalens.pipeline.mailbox as mailbox

    monkeypatch.setattr(mailbox, "READ_CHUNK", 7)  # messages and lines straddle chunk edges
    body = b"".join(b"From x@y Thu Jan  1 00:00:0%d 2026\n" % i + MSG_B + b"\n" for i in range(5))
    p = tmp_path / "box"
    p.write_bytes(body)
    got = list(iter_messages([p]))
    assert [m.raw for m in got] == [MSG_B] * 5
    assert all(body[m.offset :].startswith(MSG_B) for m in got)
    cr = tmp_path / "box-cr"
    cr.write_bytes(body.replace(b"\n", b"\r"))
    assert [m.offset for m in iter_messages([cr])] == [m.offset for m in got]
