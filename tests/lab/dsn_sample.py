"""Record real Exim 4.96 and Sendmail 8.17 DSNs and the logs of the same runs (bounce links).

Not a test: a script that produced tests/fixtures/bounces/{exim-4.96,sendmail-8.17}-*.eml and
tests/fixtures/bounce_links/{exim-4.96,sendmail-8.17}.log once, kept so they can be produced
again. As root, after ``.ci/unpack-exim.sh`` and ``.ci/unpack-sendmail.sh``::

    .venv/bin/python -m tests.lab.dsn_sample OUTDIR

Each MTA (tests/lab/exim_lab.py, tests/lab/sendmail_lab.py) relays to tests/lab/fake_mx.py,
which refuses ``unknown*`` with 550 5.1.1 at RCPT, so each message below is returned at once to
its local sender in a DSN delivered to a Maildir. The messages, for each MTA:

* ``full``: the whole message is returned (``message/rfc822``, the default);
* ``hdrs``: ``MAIL FROM:<...> RET=HDRS`` (RFC 3461 section 4.3): the DSN returns the headers
  only (``text/rfc822-headers``); Exim advertises DSN only to ``dsn_advertise_hosts`` (spec
  chapter "Main configuration", set to ``*`` here), Sendmail always;
* ``shared-1``, ``shared-2``: two messages with the same Message-ID to the same recipient (a
  Message-ID cannot tell their DSNs apart);
* ``nomsgid``: no Message-ID header. Exim adds one only to local or submission-mode messages
  (spec section "The Message-ID: header line"), so its DSN returns a message without one;
  Sendmail adds one to every message that lacks it (cf/README, the ``H?M?Message-Id`` header
  of sendmail.cf), so its DSN has Sendmail's own.

The DSNs are written as ``OUTDIR/<mta>-<case>.eml`` and the logs as ``OUTDIR/<mta>.log``,
unchanged.
"""

from __future__ import annotations

import smtplib
import sys
import tempfile
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from pathlib import Path

from tests.lab.exim_lab import EximLab
from tests.lab.fake_mx import FakeMX
from tests.lab.sendmail_lab import SendmailLab, SendmailTimings, mx_tls_context

SENDER = "sender@example.net"
CASES = ("full", "hdrs", "shared-1", "shared-2", "nomsgid")


class DsnEximLab(EximLab):
    """The Exim lab, advertising DSN (RFC 3461) so a client may ask for RET=HDRS."""

    def config(self) -> str:
        return (
            super()
            .config()
            .replace("acl_smtp_rcpt = ", "dsn_advertise_hosts = *\nacl_smtp_rcpt = ", 1)
        )


def _message(case: str, rcpt: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = rcpt
    msg["Subject"] = f"dsn sample {case}"
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    if case.startswith("shared"):
        msg["Message-ID"] = "<shared@client.example.net>"
    elif case != "nomsgid":
        msg["Message-ID"] = f"<dsn-{case}@client.example.net>"
    msg.set_content(f"case {case}\n")
    return msg.as_bytes(policy=SMTP)  # CRLF: Sendmail 8.17.1.9 refuses bare LFs


def _send(port: int, case: str) -> str:
    """One SMTP transaction; Exim's and Sendmail's 250 reply to the data, which names the id."""
    rcpt = (
        "unknown-shared@example.com" if case.startswith("shared") else f"unknown-{case}@example.com"
    )
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.net") as s:
        s.ehlo()
        code, reply = s.mail(SENDER, ["RET=HDRS"] if case == "hdrs" else [])
        assert code == 250, reply
        code, reply = s.rcpt(rcpt)
        assert code == 250, reply
        code, reply = s.data(_message(case, rcpt))
        assert code == 250, reply
    return reply.decode("ascii", "replace")


def _record(out: Path, mta: str, port: int, maildir: Path) -> None:
    for case in CASES:
        seen = set(_names(maildir))
        print(mta, case, _send(port, case), file=sys.stderr)
        deadline = time.monotonic() + 60
        while not (new := set(_names(maildir)) - seen):
            assert time.monotonic() < deadline, f"{mta} {case}: no DSN in {maildir}"
            time.sleep(0.3)
        (path,) = new
        (out / f"{mta}-{case}.eml").write_bytes(path.read_bytes())


def _names(maildir: Path) -> list[Path]:
    return [
        p for sub in ("new", "cur") if (maildir / sub).is_dir() for p in (maildir / sub).iterdir()
    ]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with FakeMX() as mx, DsnEximLab(mx_port=mx.port) as lab:
        _record(out, "exim-4.96", lab.smtp_port, lab.maildir_path)
        time.sleep(2)
        (out / "exim-4.96.log").write_text(lab.log_text())
    with tempfile.TemporaryDirectory(prefix="mtalens-dsn-sample-") as tmp:
        work = Path(tmp)
        with FakeMX(tls_context=mx_tls_context(work / "mx-tls")) as mx:
            sm = SendmailLab(work, mx_port=mx.port, timings=SendmailTimings())
            with sm:
                _record(out, "sendmail-8.17", sm.smtp_port, sm.maildir("sender"))
                sm.wait_until_idle(timeout=60, settle=2.0)
                (out / "sendmail-8.17.log").write_text(sm.log_text())


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
