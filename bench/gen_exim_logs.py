"""Seeded, streaming generator of realistic Exim 4 main logs (``mainlog``), for benchmarks and tests.

    python bench/gen_exim_logs.py --lines 1000000 --out /tmp/x.log [--seed 1]
        [--ids 16|23|both] [--pid] [--millisec] [--counts OUT.json]

It simulates one Exim 4 host (``mx1.example.com``, local domains example.com/.net/.org; MX on
port 25 and submission on 587) and writes its main log in time order, the lines of concurrent
SMTP sessions, deliveries and queue runs interleaved as Exim writes them: every message is
simulated from its ``<=`` to its ``Completed`` (or to the end of the log) before its lines are
queued, so per message the lines agree: one message id, ``QT=`` grows with each attempt, ``->``
follows the ``=>`` of the same SMTP transaction, a ``**`` makes one bounce (``<= <> R=id``) per
delivery run, ``Completed`` comes once no address is left.

The source for every line shape is the Exim specification, chapter "Log files"
(https://www.exim.org/exim-html-current/doc/html/spec_html/ch-log_files.html; the lines are
written here from it), checked against sample_logs/exim/real-exim-4.96.log (a real Exim 4.96):

- "Logging message reception": ``<= sender H=name (helo) [ip]:port I=[ip]:port P=esmtps
  X=cipher CV=no A=authenticator:id S=size id=message-id for rcpt ...`` (``+incoming_port``,
  ``+incoming_interface``, ``+received_recipients``, ``+tls_cipher``; ``H=(helo) [ip]`` when the
  client's address has no verified name, ``H=name [ip]`` when the HELO equals it); local
  submissions ``U=user P=local``; bounces ``<= <> R=<id of the failed message> U=Debian-exim
  P=local``.
- "Logging deliveries": ``=> rcpt R=router T=transport H=host [ip] X=... CV=yes C="250 ..."
  QT=... DT=...`` (``+smtp_confirmation``, ``+queue_time``, ``+deliver_time``), ``->`` for further
  addresses of the same transaction, ``=> local <rcpt>`` for a local delivery and ``=> target
  <alias>`` for a redirected one.
- "Deferred deliveries" / "Delivery failures": ``== rcpt R= T= defer (errno) H=...: SMTP error
  from remote mail server after RCPT TO:<rcpt>: 451 ...`` (errno -44 RCPT, -45 MAIL, -46 DATA,
  111 refused, 110 timed out), ``** rcpt ...`` likewise, ``** rcpt: retry timeout exceeded``,
  ``** rcpt R= T=: retry time not reached for any host after a long failure period``;
  multi-line SMTP replies with their newlines logged as ``\\n``.
- "Completion" (``Completed``), "Message frozen" (``Frozen (delivery error message)``, a bounce
  that could not be delivered), queue runner ``Start queue run: pid=N`` / ``End queue run``.
- "Other log entries", ``+smtp_connection``: ``SMTP connection from [ip]:port I=[ip]:25
  (TCP/IP connection count = N)``, ``... closed by QUIT``, ``no MAIL in SMTP connection from ...
  D=5s C=EHLO,QUIT``, ``unexpected disconnection while reading SMTP command from ...``, ``SMTP
  command timeout on connection from ...``, ``SMTP protocol synchronization error``, ``TLS error
  on connection from ...``, ``plain authenticator failed for ...: 535 Incorrect authentication
  data (set_id=...)``.
- ACL rejections without a message id (``H=... F=<sender> rejected RCPT <rcpt>: ...``,
  ``temporarily rejected RCPT``, ``rejected EHLO or HELO``, ``sender verify fail for <...>``) and
  with one after DATA (``id H=... F=<...> rejected after DATA: ...``).

Message ids (spec chapter "How Exim receives and delivers mail", "Message identification"; for
4.97 exim_id_update(8)): 16 characters ``tttttt-pppppp-ff`` (4.96 and earlier: base-62 seconds,
pid, 1/2000 s) or 23 ``tttttt-ppppppppppp-ffff`` (4.97 and later: 64-bit pid, microseconds).
``--ids both`` switches from the short to the long form half way through the file, as after an
upgrade; messages already queued keep their ids (exim_id_update -u would rename them: not
modelled). eximstats 1.61 (Debian 12's) reads only the 16-character form: the benchmark uses it.

Timestamps are Exim's own, ``2026-03-02 06:00:01`` in UTC (ingest with ``--timezone UTC``),
``.123`` with ``--millisec`` and `` [pid]`` after it with ``--pid`` (log_selector +millisec,
+pid). Queue timing is compressed (retry every 15 min, queue runner every 30 min, retry timeout
4 h instead of Exim's default ``F,4d,6h``) so that retries and timeouts show in a few hours.

``counts`` (``--counts FILE`` as JSON) says how many lines of each kind were written, so a
test can compare them with what the store holds.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from genio import write_chunked

MY_NAME = "mx1.example.com"
MY_IP = "198.51.100.25"
LOCAL_DOMAINS = ("example.com", "example.net", "example.org")
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_START = datetime(2026, 3, 2, 6, 0, 0, tzinfo=UTC)
FIRST = ("anna", "ben", "carla", "dave", "emma", "felix", "greta", "hugo", "ines", "jonas",
         "katja", "lars", "mia", "nils", "olga", "paul", "rosa", "sven", "tina", "uwe", "vera",
         "info", "sales", "support", "billing", "jobs", "office", "noreply")  # fmt: skip
LAST = ("meyer", "schmidt", "nguyen", "garcia", "smith", "rossi", "novak", "kowalski", "jensen",
        "dubois", "silva", "tanaka", "ali", "berg", "costa", "weber", "fischer", "moreau")  # fmt: skip
TLS_IN = "TLS1.3:TLS_AES_256_GCM_SHA384:256"
TLS_OUT = ("TLS1.3:TLS_AES_256_GCM_SHA384:256", "TLS1.2:ECDHE_RSA_AES_128_GCM_SHA256:128")
LINES_PER_SESSION = 5.0  # lines written per session, on average (measured, seeds 1-5)
DNSBLS = ("zen.spamhaus.org", "b.barracudacentral.org", "bl.spamcop.net")


class IdForm(StrEnum):
    SHORT = "16"  # Exim 4.96 and earlier
    LONG = "23"  # Exim 4.97 and later
    BOTH = "both"  # short for the first half of the file, then long


@dataclass(frozen=True, slots=True, kw_only=True)
class GenConfig:
    """Knobs of the simulated host (timing compressed, see the module docstring)."""

    lines: int
    seed: int = 1
    start: datetime = DEFAULT_START
    ids: IdForm = IdForm.SHORT
    pid: bool = False  # log_selector +pid
    millisec: bool = False  # log_selector +millisec
    sessions_per_second: float = 6.0
    queue_run_interval: float = 1800.0  # the daemon's -q30m
    retry_interval: float = 900.0  # retry rule F,..,15m
    retry_timeout: float = 4 * 3600.0  # Exim's default rule gives up after 4d
    noise_interval: float = 900.0


@dataclass(frozen=True, slots=True, kw_only=True)
class GenStats:
    lines: int
    bytes: int
    seconds: float
    counts: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Remote:
    domain: str
    mx: str
    ip: str
    ok: str  # the C= text; {q} a remote queue id, {t} a number
    unknown: tuple[str, str]  # (after what, reply) of a 5xx for a bad address
    tempfail: tuple[str, str]  # ... of a 4xx
    tls: bool
    dead: bool = False  # no MX answers: deferred until the retry timeout


@dataclass(slots=True)
class _Rcpt:
    addr: str  # as given in RCPT TO
    kind: str  # "local", "alias" (redirected to a remote address) or "remote"
    remote: _Remote | None = None
    target: str | None = None  # local part ("local") or remote address ("alias")
    deferred_by: str = ""  # "smtp" or "conn": how its last attempt failed


def _b62(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        out.append(B62[rem])
    return "".join(reversed(out))


def exim_duration(seconds: float, millisec: bool) -> str:
    """Exim's readconf_printtime() form of QT=/DT=: ``1h2m5s``, ``0s`` (``1.234s`` with
    millisec)."""
    whole = int(seconds)
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if millisec:
        ms = int((seconds - int(seconds)) * 1000)
        parts.append(f"{whole}.{ms:03d}s")
    elif whole or not parts:
        parts.append(f"{whole}s")
    return "".join(parts)


class _Sim:
    def __init__(self, cfg: GenConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.heap: list[tuple[float, int, str, str]] = []
        self.seq = itertools.count()
        # the time from which ids have the long form (--ids both: about the file's middle)
        self.long_from = math.inf
        if cfg.ids is IdForm.LONG:
            self.long_from = -math.inf
        elif cfg.ids is IdForm.BOTH:
            span = cfg.lines / (LINES_PER_SESSION * cfg.sessions_per_second)
            self.long_from = cfg.start.timestamp() + span / 2
        self.millisec = cfg.millisec
        rng = self.rng
        self._pid = rng.randrange(2000, 30000)
        self.daemon_pid = self._new_pid()
        self.conns = 0  # TCP/IP connection count
        self.q0 = cfg.start.timestamp() + rng.uniform(60, cfg.queue_run_interval)
        self.local_users = [
            (f"{rng.choice(FIRST)}.{rng.choice(LAST)}", rng.choice(LOCAL_DOMAINS))
            for _ in range(300)
        ]
        self.remotes = self._make_remotes()
        self.remote_addrs = [self._remote_addr() for _ in range(3000)]
        self.clients = [self._make_client() for _ in range(3000)]
        self.spammers = [(self._ip(), rng.choice(("User", "localhost", "WIN-3K2HJ7L", "ylmf-pc",
                          "example.com", f"[{self._ip()}]"))) for _ in range(2000)]  # fmt: skip

    # ---- identities ---------------------------------------------------------------------------
    def _new_pid(self) -> int:
        self._pid += self.rng.randrange(1, 12)
        if self._pid > 4194304:  # Linux pid_max default on 64-bit
            self._pid = 300
        return self._pid

    def _ip(self) -> str:
        r = self.rng.randrange
        first = r(1, 224)
        while first in (10, 127, 172, 192, 169, 100):  # keep clear of private/special ranges
            first = r(1, 224)
        return f"{first}.{r(0, 256)}.{r(0, 256)}.{r(1, 255)}"

    def message_id(self, t: float, pid: int) -> str:
        """The Exim id of a message received at ``t`` by process ``pid``."""
        sec = int(t)
        usec = int((t - sec) * 1_000_000)
        if t >= self.long_from:
            return f"{_b62(sec, 6)}-{_b62(pid, 11)}-{_b62(usec, 4)}"
        return f"{_b62(sec, 6)}-{_b62(pid, 6)}-{_b62(usec // 500, 2)}"

    def _make_client(self) -> tuple[str | None, str, str]:
        """(verified name or None, HELO, ip) of a remote MTA that sends us mail."""
        rng = self.rng
        ip = self._ip()
        roll = rng.random()
        if roll < 0.45:
            name = f"mail-{rng.choice(('ed1', 'wm1', 'oi1', 'pj1'))}-f{rng.randrange(100, 999)}.google.com"
            return name, name, ip
        if roll < 0.8:
            dom = f"{rng.choice(LAST)}-{rng.choice(('gmbh', 'corp', 'shop', 'net'))}.{rng.choice(('de', 'com', 'fr', 'nl'))}"
            name = f"mail{rng.randrange(1, 9)}.{dom}"
            return name, (name if rng.random() < 0.7 else f"smtp.{dom}"), ip
        return None, f"mx{rng.randrange(1, 99)}.{rng.choice(LAST)}-mailer.net", ip

    def _remote_addr(self) -> tuple[str, _Remote]:
        rng = self.rng
        rem = rng.choice(self.remotes)
        sep = rng.choice((".", "_", ""))
        num = rng.randrange(0, 99) if rng.random() < 0.3 else ""
        return f"{rng.choice(FIRST)}{sep}{rng.choice(LAST)}{num}@{rem.domain}", rem

    def _make_remotes(self) -> list[_Remote]:
        ip = self._ip
        gmail_unknown = (
            "550-5.1.1 The email account that you tried to reach does not exist. Please try\\n"
            "550-5.1.1 double-checking the recipient's email address for typos or\\n"
            "550-5.1.1 unnecessary spaces. For more information, go to\\n"
            "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser {q} - gsmtp"
        )
        outlook_ok = (
            "250 2.6.0 <{m}> [InternalId={t}, Hostname=AM7EUR03HT{n}.eop-EUR03.prod.protection."
            "outlook.com] {s} bytes in 0.{n}, 42.120 KB/sec Queued mail for delivery"
        )
        outlook_unknown = (
            "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
            "[AM7EUR03FT{n}.eop-EUR03.prod.protection.outlook.com]"
        )
        outlook_busy = (
            "451 4.7.500 Server busy. Please try again later from [" + MY_IP + "]. (S77714) "
            "[AM7EUR03FT{n}.eop-EUR03.prod.protection.outlook.com]"
        )
        rcpt, mail, data = "RCPT", "MAIL", "DATA"
        out = [
            _Remote(domain="gmail.com", mx="gmail-smtp-in.l.google.com", ip=ip(),
                    ok="250 2.0.0 OK  {t} {q} - gsmtp", unknown=(rcpt, gmail_unknown),
                    tempfail=(data, "421-4.7.28 Gmail has detected an unusual rate of "
                              "unsolicited mail.\\n421 4.7.28 To protect our users, mail has "
                              "been temporarily rate limited. {q} - gsmtp"), tls=True),
            _Remote(domain="outlook.com", mx="outlook-com.olc.protection.outlook.com", ip=ip(),
                    ok=outlook_ok, unknown=(rcpt, outlook_unknown), tempfail=(rcpt, outlook_busy),
                    tls=True),
            _Remote(domain="hotmail.com", mx="hotmail-com.olc.protection.outlook.com", ip=ip(),
                    ok=outlook_ok, unknown=(rcpt, outlook_unknown), tempfail=(rcpt, outlook_busy),
                    tls=True),
            _Remote(domain="yahoo.com", mx="mta6.am0.yahoodns.net", ip=ip(), ok="250 ok dirdel",
                    unknown=(rcpt, "554 delivery error: dd This user doesn't have a yahoo.com "
                             "account ({r}) [0] - mta{n}.mail.gq1.yahoo.com"),
                    tempfail=(mail, "421 4.7.0 [TSS04] Messages from " + MY_IP + " temporarily "
                              "deferred due to unexpected volume or user complaints - 4.16.55.1;"
                              " see https://postmaster.yahooinc.com/error-codes"), tls=True),
            _Remote(domain="gmx.de", mx="mx00.emig.gmx.net", ip=ip(),
                    ok="250 Requested mail action okay, completed: id={q}",
                    unknown=(rcpt, "550 Requested action not taken: mailbox unavailable"),
                    tempfail=(rcpt, "451 Requested action aborted: local error in processing"),
                    tls=True),
        ]  # fmt: skip
        rng = self.rng
        for i in range(60):
            dom = f"{rng.choice(LAST)}-{rng.choice(('mail', 'group', 'shop', 'law', 'tech'))}.{rng.choice(('de', 'com', 'fr', 'nl', 'org', 'at'))}"
            ok = "250 2.0.0 Ok: queued as {q}" if i % 3 else "250 OK id={x}"
            unknown = (
                "550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table"
                if i % 2
                else "550 5.1.1 <{r}>: Recipient address rejected: User unknown"
            )
            grey = (
                f"450 4.2.0 <{{r}}>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/{dom}.html"
                if i % 2
                else "451 4.7.1 Greylisted, please try again later"
            )
            out.append(_Remote(domain=dom, mx=f"mx{rng.randrange(1, 3)}.{dom}", ip=ip(), ok=ok,
                               unknown=(rcpt, unknown), tempfail=(rcpt, grey),
                               tls=rng.random() < 0.7, dead=i < 2))  # fmt: skip
        return out

    # ---- output -------------------------------------------------------------------------------
    def emit(self, t: float, pid: int, text: str, kind: str) -> None:
        """Queue one line; ``kind`` is what it is counted as when it is written."""
        if self.cfg.pid:
            text = f"[{pid}] {text}"
        heapq.heappush(self.heap, (t, next(self.seq), text, kind))

    def _fill(self, text: str, rcpt: str, sender: str, size: int, mid: str) -> str:
        rng = self.rng
        if "{" not in text:
            return text
        return text.format(
            r=rcpt,
            q="".join(rng.choices(B62, k=12)),
            t=rng.randrange(10**9, 2 * 10**9),
            n=rng.randrange(100, 999),
            m=mid,
            s=size,
            x=f"{_b62(rng.randrange(62**6), 6)}-{_b62(rng.randrange(62**6), 6)}-{_b62(rng.randrange(3844), 2)}",
        )

    # ---- sessions -----------------------------------------------------------------------------
    def session(self, t: float) -> None:
        roll = self.rng.random()
        if roll < 0.40:
            self.inbound(t)
        elif roll < 0.62:
            self.submission(t)
        elif roll < 0.66:
            self.local_submission(t)
        elif roll < 0.88:
            self.spam_attempt(t)
        elif roll < 0.95:
            self.odd_session(t)
        else:
            self.auth_attack(t)

    def _open(self, t: float, ip: str, port: int) -> tuple[int, int]:
        pid = self._new_pid()
        self.conns = 1 + int(self.rng.expovariate(1 / 6))
        cport = self.rng.randrange(1024, 65535)
        self.emit(t, pid, f"SMTP connection from [{ip}]:{cport} I=[{MY_IP}]:{port} "
                          f"(TCP/IP connection count = {self.conns})", "connect")  # fmt: skip
        return pid, cport

    @staticmethod
    def _host(name: str | None, helo: str, ip: str, cport: int) -> str:
        if name is None:
            return f"({helo}) [{ip}]:{cport}"
        if name == helo:
            return f"{name} [{ip}]:{cport}"
        return f"{name} ({helo}) [{ip}]:{cport}"

    def inbound(self, t: float) -> None:
        """A remote MTA delivers one or two messages to local users, some recipients refused."""
        rng = self.rng
        name, helo, ip = rng.choice(self.clients)
        pid, cport = self._open(t, ip, 25)
        host = f"{self._host(name, helo, ip, cport)} I=[{MY_IP}]:25"
        t += rng.uniform(0.2, 1.5)
        for _ in range(1 if rng.random() < 0.85 else 2):
            sender = rng.choice(self.remote_addrs)[0]
            rcpts: list[_Rcpt] = []
            for _ in range(1 if rng.random() < 0.8 else rng.randrange(2, 5)):
                if rng.random() < 0.06:  # an address we do not have: refused at RCPT
                    t += rng.uniform(0.01, 0.2)
                    bad = f"{rng.choice(FIRST)}{rng.randrange(1, 99)}@{rng.choice(LOCAL_DOMAINS)}"
                    self.emit(t, pid, f"H={host} F=<{sender}> rejected RCPT <{bad}>: "
                                      "Unknown user", "reject")  # fmt: skip
                    continue
                local, dom = rng.choice(self.local_users)
                if rng.random() < 0.08:  # an alias that forwards to a remote mailbox
                    addr, _rem = rng.choice(self.remote_addrs)
                    rcpts.append(_Rcpt(f"{rng.choice(FIRST)}@{dom}", "alias", _rem, addr))
                else:
                    rcpts.append(_Rcpt(f"{local}@{dom}", "local", None, local))
            if not rcpts:
                continue
            # the id is made when DATA begins: after the previous message's "<=", so the ids
            # of one process differ (Exim waits for its clock to tick if need be)
            started = t + rng.uniform(0.01, 0.3)
            t = started + rng.uniform(0.05, 2.5)
            if rng.random() < 0.015:  # content scan verdict: refused after DATA, with an id
                mid = self.message_id(started, pid)
                reason = rng.choice((
                    "This message scored 14.2 spam points.",
                    "This message contains a virus (Eicar-Signature).",
                    "Your message looks like SPAM or has been reported as SPAM."))  # fmt: skip
                self.emit(t, pid, f"{mid} H={host} F=<{sender}> rejected after DATA: {reason}",
                          "reject-data")  # fmt: skip
                continue
            how = f"H={host} P=esmtps X={TLS_IN} CV=no"
            self.receive(started, t, pid, sender, how, rcpts, name or helo)
        t += rng.uniform(0.05, 0.5)
        self.emit(t, pid, f"SMTP connection from {host} closed by QUIT", "disconnect")

    def submission(self, t: float) -> None:
        """A local user sends mail through port 587 (authenticated), mostly to the outside."""
        rng = self.rng
        ip = self._ip()
        pid, cport = self._open(t, ip, 587)
        local, dom = rng.choice(self.local_users)
        helo = rng.choice(("[192.168.1.23]", f"laptop-{local.split('.')[0]}", "localhost"))
        host = f"({helo}) [{ip}]:{cport} I=[{MY_IP}]:587"
        rcpts: list[_Rcpt] = []
        for _ in range(1 if rng.random() < 0.7 else rng.randrange(2, 7)):
            if rng.random() < 0.15:
                other, odom = rng.choice(self.local_users)
                rcpts.append(_Rcpt(f"{other}@{odom}", "local", None, other))
            else:
                addr, rem = rng.choice(self.remote_addrs)
                rcpts.append(_Rcpt(addr, "remote", rem))
        started = t + rng.uniform(0.5, 3)
        t = started + rng.uniform(0.05, 1)
        auth = f"A=dovecot_plain:{local}@{dom}"
        self.receive(started, t, pid, f"{local}@{dom}", f"H={host} P=esmtpsa X={TLS_IN} CV=no {auth}",
                     rcpts, helo)  # fmt: skip
        self.emit(t + rng.uniform(0.05, 0.4), pid, f"SMTP connection from {host} closed by QUIT",
                  "disconnect")  # fmt: skip

    def local_submission(self, t: float) -> None:
        """cron, a web application or root on the host itself (no SMTP connection)."""
        rng = self.rng
        pid = self._new_pid()
        user = rng.choice(("root", "www-data", "backup", "nagios"))
        local, dom = rng.choice(self.local_users)
        if rng.random() < 0.5:
            rcpts = [_Rcpt(f"{local}@{dom}", "local", None, local)]
        else:
            addr, rem = rng.choice(self.remote_addrs)
            rcpts = [_Rcpt(addr, "remote", rem)]
        how = f"U={user} P=local"
        self.receive(t, t + rng.uniform(0.01, 0.2), pid, f"{user}@{MY_NAME}", how, rcpts, None)

    def spam_attempt(self, t: float) -> None:
        """A client on a blocklist, a relay attempt or a failed sender check: refused at RCPT."""
        rng = self.rng
        ip, helo = rng.choice(self.spammers)
        pid, cport = self._open(t, ip, 25)
        host = f"({helo}) [{ip}]:{cport} I=[{MY_IP}]:25"
        sender = rng.choice(self.remote_addrs)[0] if rng.random() < 0.7 else ""
        opened = t
        t += rng.uniform(0.5, 5)
        for _ in range(1 if rng.random() < 0.7 else rng.randrange(2, 5)):
            roll = rng.random()
            local, dom = rng.choice(self.local_users)
            rcpt = f"{local}@{dom}"
            kind = "reject"
            if roll < 0.45:
                bl = rng.choice(DNSBLS)
                why = f"JunkMail rejected - {ip} is listed at {bl}"
            elif roll < 0.65:
                rcpt = rng.choice(self.remote_addrs)[0]
                why = "relay not permitted"
            elif roll < 0.8 and sender:
                self.emit(t, pid, f"H={host} sender verify fail for <{sender}>: "
                                  "Unrouteable address", "ignored:exim-other")  # fmt: skip
                why = "Sender verify failed"
            else:
                why, kind = "greylisted, try again later", "tempreject"
            verb = "temporarily rejected" if kind == "tempreject" else "rejected"
            self.emit(t, pid, f"H={host} F=<{sender}> {verb} RCPT <{rcpt}>: {why}", kind)
            t += rng.uniform(0.05, 1)
        if rng.random() < 0.6:
            self.emit(t + 0.2, pid, f"SMTP connection from {host} closed by QUIT", "disconnect")
        else:
            t += rng.uniform(0.1, 2)
            self.emit(t, pid, "unexpected disconnection while reading SMTP command from "
                      f"{host} D={int(t - opened)}s", "lost")  # fmt: skip

    def odd_session(self, t: float) -> None:
        """Scanners and broken clients: no MAIL, timeouts, early talkers, TLS failures, bad HELO."""
        rng = self.rng
        ip, helo = rng.choice(self.spammers)
        pid, cport = self._open(t, ip, 25)
        host = f"[{ip}]:{cport} I=[{MY_IP}]:25"
        roll = rng.random()
        d = rng.randrange(1, 30)
        if roll < 0.35:
            self.emit(t + d, pid, f"no MAIL in SMTP connection from ({helo}) {host} D={d}s "
                                  "C=EHLO,STARTTLS,EHLO,QUIT", "no-mail")  # fmt: skip
        elif roll < 0.5:
            self.emit(t + 300, pid, f"SMTP command timeout on connection from {host} D=5m",
                      "lost")  # fmt: skip
        elif roll < 0.65:
            self.emit(t + 0.1, pid, "SMTP protocol synchronization error (input sent without "
                      f"waiting for greeting): rejected connection from H={host} "
                      'input="EHLO User\\r\\n"', "ignored:exim-other")  # fmt: skip
        elif roll < 0.85:
            self.emit(t + 0.4, pid, f"TLS error on connection from {host} (SSL_accept): "
                      "error:0A000126:SSL routines::unexpected eof while reading",
                      "tls-error")  # fmt: skip
        else:
            self.emit(t + 0.3, pid, f"H=({helo}) {host} rejected EHLO or HELO {helo}: "
                      "Invalid HELO name (See RFC5321 4.1.1.1)", "reject")  # fmt: skip
            self.emit(t + 0.5, pid, f"SMTP connection from ({helo}) {host} closed by QUIT",
                      "disconnect")  # fmt: skip

    def auth_attack(self, t: float) -> None:
        """Password guessing on the submission port."""
        rng = self.rng
        ip, helo = rng.choice(self.spammers)
        pid, cport = self._open(t, ip, 587)
        host = f"({helo}) [{ip}]:{cport} I=[{MY_IP}]:587"
        for _ in range(rng.randrange(1, 4)):
            t += rng.uniform(1, 6)
            local, dom = rng.choice(self.local_users)
            user = f"{local}@{dom}" if rng.random() < 0.7 else rng.choice(("admin", "test", "info"))
            auth = rng.choice(("dovecot_plain", "dovecot_login"))
            self.emit(t, pid, f"{auth} authenticator failed for {host}: 535 Incorrect "
                              f"authentication data (set_id={user})", "auth-fail")  # fmt: skip
        self.emit(t + rng.uniform(0.1, 1), pid, "unexpected disconnection while reading SMTP "
                  f"command from {host} D={rng.randrange(2, 20)}s", "lost")  # fmt: skip

    # ---- messages -----------------------------------------------------------------------------
    def receive(
        self,
        started: float,
        t: float,
        pid: int,
        sender: str,
        how: str,
        rcpts: list[_Rcpt],
        origin: str | None,
    ) -> None:
        """The ``<=`` line at ``t`` of a new message whose data began at ``started``, then
        its deliveries."""
        rng = self.rng
        mid = self.message_id(started, pid)
        size = int(rng.lognormvariate(8.6, 1.1)) + 400
        if origin is None:
            hdr = f"E{mid}@{MY_NAME}"  # Exim's own Message-ID header
        elif origin.endswith("google.com"):
            hdr = f"CA+{''.join(rng.choices(B62, k=30))}@mail.gmail.com"
        else:
            hdr = f"{''.join(rng.choices(B62, k=20))}.{rng.randrange(10**9, 10**10)}@{origin.strip('[]')}"
        where = " ".join(r.addr for r in rcpts)
        self.emit(t, pid, f"{mid} <= {sender or '<>'} {how} S={size} id={hdr} for {where}",
                  "arrival")  # fmt: skip
        self.deliver(mid, started, t + rng.uniform(0.01, 0.3), sender, size, rcpts)

    def bounce(self, t: float, about: str, sender: str) -> None:
        """Exim's non-delivery report to ``sender`` about message ``about``."""
        rng = self.rng
        pid = self._new_pid()
        mid = self.message_id(t, pid)
        size = rng.randrange(1800, 9000)
        self.emit(t, pid, f"{mid} <= <> R={about} U=Debian-exim P=local S={size} for {sender}",
                  "bounce-arrival")  # fmt: skip
        local = sender.rpartition("@")[2] in LOCAL_DOMAINS
        if local:
            rcpt = _Rcpt(sender, "local", None, sender.partition("@")[0])
        else:
            rem = next((r for r in self.remotes if sender.endswith("@" + r.domain)), None)
            rcpt = _Rcpt(sender, "remote", rem or self.remotes[0])
        self.deliver(mid, t, t + rng.uniform(0.01, 0.2), "", size, [rcpt])

    def _next_queue_run(self, t: float) -> float:
        every = self.cfg.queue_run_interval
        return self.q0 + math.ceil((t - self.q0) / every) * every

    def deliver(
        self, mid: str, arrival: float, t: float, sender: str, size: int, rcpts: list[_Rcpt]
    ) -> None:
        """Delivery runs of one message until no address is left (or the log has ended)."""
        rng = self.rng
        cfg = self.cfg
        ms = self.millisec
        pending = rcpts
        first = True
        while pending:
            pid = self._new_pid()
            left: list[_Rcpt] = []
            failed: list[str] = []
            given_up = t - arrival > cfg.retry_timeout
            # one SMTP transaction per remote domain: "=>" for its first address, "->" after
            groups: dict[str, list[_Rcpt]] = {}
            for r in pending:
                key = "" if r.kind == "local" else r.remote.domain  # type: ignore[union-attr]
                groups.setdefault(key, []).append(r)
            for key, group in groups.items():
                if key == "":
                    for r in group:
                        t += rng.uniform(0.002, 0.05)
                        if rng.random() < 0.01 and not given_up:
                            self.emit(t, pid, f"{mid} == {r.addr} R=local_user T=mail_spool "
                                      "defer (-22): mailbox is full (MTA-imposed quota exceeded "
                                      f"while writing to /var/mail/{r.target})", "deferred")  # fmt: skip
                            r.deferred_by = "quota"
                            left.append(r)
                            continue
                        dt = rng.uniform(0.001, 0.05)
                        t += dt
                        self.emit(t, pid, f"{mid} => {r.target} <{r.addr}> R=local_user "
                                  f"T=mail_spool QT={exim_duration(t - arrival, ms)} "
                                  f"DT={exim_duration(dt, ms)}", "sent")  # fmt: skip
                    continue
                rem = group[0].remote
                assert rem is not None
                t += rng.uniform(0.05, 1.5)
                if rem.dead:
                    for r in group:
                        if given_up:
                            self.emit(t, pid, f"{mid} ** {r.addr} R=dnslookup T=remote_smtp: "
                                      "retry time not reached for any host after a long failure "
                                      "period", "bounced")  # fmt: skip
                            failed.append(r.addr)
                        else:
                            why = rng.choice(("defer (111): Connection refused",
                                              "defer (110): Connection timed out"))  # fmt: skip
                            self.emit(t, pid, f"{mid} == {r.addr} R=dnslookup T=remote_smtp "
                                      f"{why}", "deferred")  # fmt: skip
                            left.append(r)
                    continue
                hostpart = f"H={rem.mx} [{rem.ip}]"
                if rem.tls:
                    hostpart += f" X={rng.choice(TLS_OUT)} CV=yes"
                arrow = "=>"
                dt_start = t
                for r in group:
                    t += rng.uniform(0.01, 0.4)
                    roll = rng.random()
                    text = r.target if r.kind == "alias" and r.target else r.addr
                    shown = f"{r.target} <{r.addr}>" if r.kind == "alias" else r.addr
                    sticky = r.deferred_by == "sticky"  # a mailbox that answers 4xx for hours
                    if given_up and r.deferred_by:
                        self.emit(t, pid, f"{mid} ** {r.addr}: retry timeout exceeded", "expired")
                        failed.append(r.addr)
                    elif roll < 0.04 and not sticky:
                        stage, reply = rem.unknown
                        self.emit(t, pid, f"{mid} ** {shown} R=dnslookup T=remote_smtp "
                                  f"{hostpart}: SMTP error from remote mail server after "
                                  f"{self._after(stage, text, sender, size)}: "
                                  f"{self._fill(reply, text, sender, size, mid)} "
                                  f"DT={exim_duration(t - dt_start, ms)}", "bounced")  # fmt: skip
                        failed.append(r.addr)
                    elif sticky or roll < 0.04 + (0.15 if first else 0.06):
                        stage, reply = rem.tempfail
                        errno = {"RCPT": -44, "MAIL": -45, "DATA": -46}[stage]
                        self.emit(t, pid, f"{mid} == {shown} R=dnslookup T=remote_smtp defer "
                                  f"({errno}) {hostpart} DT={exim_duration(t - dt_start, ms)}: "
                                  "SMTP error from remote mail server after "
                                  f"{self._after(stage, text, sender, size)}: "
                                  f"{self._fill(reply, text, sender, size, mid)}",
                                  "deferred")  # fmt: skip
                        if not sticky:
                            r.deferred_by = "sticky" if rng.random() < 0.1 else "smtp"
                        left.append(r)
                    else:
                        conf = self._fill(rem.ok, text, sender, size, mid)
                        self.emit(t, pid, f"{mid} {arrow} {shown} R=dnslookup T=remote_smtp "
                                  f'{hostpart} C="{conf}" QT={exim_duration(t - arrival, ms)} '
                                  f"DT={exim_duration(t - dt_start, ms)}", "sent")  # fmt: skip
                        arrow = "->"
            if failed and sender:
                t += rng.uniform(0.01, 0.1)
                self.bounce(t, mid, sender)
            elif failed and not sender:  # a bounce that cannot be delivered is frozen
                t += rng.uniform(0.001, 0.01)
                self.emit(t, pid, f"{mid} Frozen (delivery error message)", "frozen")
                return
            if not left:
                t += rng.uniform(0.001, 0.02)
                self.emit(t, pid, f"{mid} Completed", "completed")
                return
            pending = left
            first = False
            t = self._next_queue_run(t + cfg.retry_interval) + rng.uniform(0.2, 40)

    @staticmethod
    def _after(stage: str, rcpt: str, sender: str, size: int) -> str:
        if stage == "RCPT":
            return f"RCPT TO:<{rcpt}>"
        if stage == "MAIL":
            return f"MAIL FROM:<{sender}> SIZE={size}"
        return "end of data"

    def queue_run(self, q: float) -> None:
        pid = self._new_pid()
        self.emit(q, pid, f"Start queue run: pid={pid}", "ignored:exim-queue-run")
        self.emit(q + 41 + self.rng.uniform(0, 5), pid, f"End queue run: pid={pid}",
                  "ignored:exim-queue-run")  # fmt: skip


def _stamp(millisec: bool) -> Any:
    """``2026-03-02 06:00:01`` (``.123`` with millisec) for a time in seconds; cached per
    second since lines come in time order."""
    cache: list[Any] = [-1, ""]

    def stamp(t: float) -> str:
        sec = int(t)
        if sec != cache[0]:
            cache[0] = sec
            cache[1] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")
        if millisec:
            return f"{cache[1]}.{int((t - sec) * 1000):03d} "
        return f"{cache[1]} "

    return stamp


def generate(cfg: GenConfig) -> tuple[Iterator[str], Counter[str]]:
    """Lines (each ending in "\\n") in time order, and the counts by kind of the lines
    produced so far (complete once the iterator is exhausted)."""
    sim = _Sim(cfg)
    counts: Counter[str] = Counter()
    return _lines(sim, counts), counts


def _lines(sim: _Sim, counts: Counter[str]) -> Iterator[str]:
    cfg = sim.cfg
    stamp = _stamp(cfg.millisec)
    heap = sim.heap
    pop = heapq.heappop
    expo = sim.rng.expovariate
    rate = cfg.sessions_per_second
    t0 = cfg.start.timestamp()
    next_arrival = t0
    next_qrun = sim.q0
    produced = 0
    limit = cfg.lines
    daemon = sim.daemon_pid
    sim.emit(t0, daemon, f"exim 4.96 daemon started: pid={daemon}, -q30m, listening for SMTP on "
             "port 25 (IPv6 and IPv4) port 587 (IPv6 and IPv4)", "ignored:exim-daemon")  # fmt: skip
    while produced < limit:
        while not heap or heap[0][0] > next_arrival:
            # queue runs are queued ahead of time: their Start line precedes their deliveries
            while next_qrun <= next_arrival + 300:
                sim.queue_run(next_qrun)
                next_qrun += cfg.queue_run_interval
            sim.session(next_arrival)
            next_arrival += expo(rate)
        t, _seq, text, kind = pop(heap)
        counts[kind] += 1
        yield f"{stamp(t)}{text}\n"
        produced += 1


def write_log(cfg: GenConfig, out: IO[bytes]) -> GenStats:
    started = time.perf_counter()
    lines, counts = generate(cfg)
    n, total = write_chunked(lines, out)
    return GenStats(
        lines=n,
        bytes=total,
        seconds=time.perf_counter() - started,
        counts=dict(sorted(counts.items())),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--out", type=Path, required=True, help="output file ('-' for stdout)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ids", type=IdForm, choices=list(IdForm), default=IdForm.SHORT,
                    help="message ids of 16 characters (4.96), 23 (4.97) or both [16]")  # fmt: skip
    ap.add_argument("--pid", action="store_true", help="log_selector +pid")
    ap.add_argument("--millisec", action="store_true", help="log_selector +millisec")
    ap.add_argument(
        "--start",
        type=datetime.fromisoformat,
        default=DEFAULT_START,
        help="simulated start time, ISO 8601 with offset [2026-03-02T06:00:00+00:00]",
    )
    ap.add_argument("--counts", type=Path, help="write the lines written by kind (JSON)")
    args = ap.parse_args(argv)
    start = args.start if args.start.tzinfo else args.start.replace(tzinfo=UTC)
    cfg = GenConfig(lines=args.lines, seed=args.seed, start=start.astimezone(UTC), ids=args.ids,
                    pid=args.pid, millisec=args.millisec)  # fmt: skip
    if str(args.out) == "-":
        stats = write_log(cfg, sys.stdout.buffer)
    else:
        with args.out.open("wb") as fh:
            stats = write_log(cfg, fh)
    if args.counts:
        args.counts.write_text(json.dumps(stats.counts, indent=1) + "\n")
    rate = stats.lines / stats.seconds if stats.seconds else 0.0
    print(
        f"wrote {stats.lines} lines, {stats.bytes / 1e6:.1f} MB "
        f"({stats.bytes / max(stats.lines, 1):.0f} B/line), "
        f"{stats.counts.get('arrival', 0) + stats.counts.get('bounce-arrival', 0)} messages "
        f"in {stats.seconds:.1f}s ({rate:,.0f} lines/s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
