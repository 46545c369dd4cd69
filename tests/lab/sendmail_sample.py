"""Record sample_logs/sendmail/real-sendmail-8.17.log from a real Sendmail 8.17 (Debian 12).

Not a test: a script that produced the sample once, kept so it can be produced again. As root,
after ``.ci/unpack-sendmail.sh`` (and with sasl2-bin's ``saslpasswd2`` on PATH, as .ci/run
installs it, for the AUTH lines)::

    .venv/bin/python -m tests.lab.sendmail_sample [SENDMAIL_ROOT] > sample_logs/sendmail/real-sendmail-8.17.log

``SENDMAIL_ROOT`` defaults to ``$MTALENS_SENDMAIL_ROOT`` or /opt/mtalens-ci/sendmail. The lab
(tests/lab/sendmail_lab.py) runs ``sm-mta`` as a daemon on 127.0.0.1 with LogLevel 10 and
short queue timeouts, relays every domain to tests/lab/fake_mx.py (offering STARTTLS) and
delivers example.net into Maildirs; its syslog receiver writes the log the way rsyslog writes
/var/log/mail.log. What the run does, in order (about 70 s):

1. one SMTP session from 127.0.0.1 with three transactions: seven recipients (250 from the MX
   for two domains, 550 5.1.1, 552 5.2.2, 554 5.7.1 "blocked using", 450 4.2.0 that expires, and
   an unknown local user refused at RCPT), then one refused after DATA (552 5.3.4), then one for
   two recipients that both expire: one answered 421 4.7.0 at RCPT, one whose host refuses the
   connection;
2. a client on 127.0.0.2 (no name) relaying to a foreign domain: check_rcpt "Relaying denied";
   its local recipient is accepted;
3. a client on 127.0.0.3: AUTH with a wrong password (PLAIN, then LOGIN), an unknown user,
   then a good password and one relayed message;
4. a client that drops the connection after RCPT;
5. a client that sends bare LFs in DATA (refused by 8.17.1.9's SMTP smuggling check);
6. a local submission (``sendmail -bm`` through the MSP and submit.cf, relayed over SMTP with
   STARTTLS to the daemon);
7. the daemon's queue runs: delay warnings after Timeout.queuewarn, then the two deferred
   messages returned after Timeout.queuereturn. Every DSN goes to a local Maildir.

The log keeps Sendmail's real queue ids, pids and times; nothing is replaced.
"""

from __future__ import annotations

import contextlib
import smtplib
import sys
import tempfile
from pathlib import Path

from tests.lab.fake_mx import FakeMX
from tests.lab.sendmail_lab import (
    SASL_PASSWORD,
    SASL_USER,
    SendmailLab,
    SendmailTimings,
    mx_tls_context,
    sendmail_root,
)

SENDER = "sender@example.net"
TIMINGS = SendmailTimings(queue_interval=5, queue_warn=15, queue_return=40)


def _session_1(lab: SendmailLab) -> None:
    with smtplib.SMTP("127.0.0.1", lab.smtp_port, local_hostname="client.example.net") as s:
        s.ehlo()
        rcpts = [
            "ok1@example.com",
            "ok2@example.org",
            "unknown1@example.com",
            "full1@example.com",
            "listed1@example.com",
            "defer1@example.com",
            "nosuch@example.net",
        ]
        lab.transaction(s, SENDER, rcpts, "lab 1: seven recipients")
        lab.transaction(s, SENDER, ["bigdata1@example.com"], "lab 2: refused after DATA")
        lab.transaction(
            s, SENDER, ["busy1@example.com", "refused1@down.example.com"], "lab 3: two hosts down"
        )


def _session_auth(lab: SendmailLab) -> None:
    for user, password in ((SASL_USER, "wrong-password"), ("mallory", "guess")):
        with smtplib.SMTP(
            "127.0.0.1",
            lab.smtp_port,
            local_hostname="laptop.example.org",
            source_address=("127.0.0.3", 0),
        ) as s:
            s.ehlo()
            with contextlib.suppress(smtplib.SMTPAuthenticationError):
                s.login(user, password)
    with smtplib.SMTP(
        "127.0.0.1",
        lab.smtp_port,
        local_hostname="laptop.example.org",
        source_address=("127.0.0.3", 0),
    ) as s:
        s.ehlo()
        s.login(SASL_USER, SASL_PASSWORD)
        lab.transaction(s, "alice@example.net", ["ok3@example.com"], "lab 5: authenticated relay")


def _session_lost(lab: SendmailLab) -> None:
    s = smtplib.SMTP("127.0.0.1", lab.smtp_port, local_hostname="flaky.example.org")
    s.ehlo()
    s.mail(SENDER)
    s.rcpt("ok4@example.com")
    s.close()  # no QUIT: the socket goes away after RCPT


def _session_bare_lf(lab: SendmailLab) -> None:
    with smtplib.SMTP("127.0.0.1", lab.smtp_port, local_hostname="oldscript.example.org") as s:
        s.ehlo()
        s.mail(SENDER)
        s.rcpt("ok5@example.com")
        # bytes are sent as given (smtplib fixes line ends only in str): bare LFs
        s.data(b"From: sender@example.net\nSubject: lab 6: bare LF\n\nhello\n")


def record(sm_root: Path, workdir: Path) -> str:
    with FakeMX(tls_context=mx_tls_context(workdir / "mx-tls")) as mx:
        lab = SendmailLab(workdir, mx_port=mx.port, timings=TIMINGS, root=sm_root)
        with lab:
            _session_1(lab)
            lab.send(
                SENDER,
                ["someone@elsewhere.test", "alice@example.net"],
                "lab 4: relay attempt",
                client_ip="127.0.0.2",
                helo="[127.0.0.2]",
            )
            _session_auth(lab)
            _session_lost(lab)
            _session_bare_lf(lab)
            lab.submit(
                "root",
                ["alice@example.net", "ok6@example.com"],
                b"Subject: lab 7: cron output\n\nlocal submission\n",
            )
            # Empty queues: both deferred messages have been returned to their sender.
            lab.wait_until_idle(timeout=TIMINGS.queue_return + 90, settle=3.0)
        return lab.log_text()


def main(argv: list[str]) -> None:
    sm_root = Path(argv[0]).resolve() if argv else sendmail_root()
    with tempfile.TemporaryDirectory(prefix="mtalens-sendmail-sample-") as tmp:
        sys.stdout.write(record(sm_root, Path(tmp)))


if __name__ == "__main__":
    main(sys.argv[1:])
