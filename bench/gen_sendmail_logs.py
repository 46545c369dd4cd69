"""Seeded, streaming generator of realistic Sendmail 8.17 syslog logs, for benchmarks and tests.

    python bench/gen_sendmail_logs.py --lines 1000000 --out /tmp/x.log [--seed 1]
        [--counts OUT.json]

It simulates one Sendmail 8.17 host (``mx1``, ``mx1.example.com``, local domains
example.com/.net/.org; the MTA daemon ``sm-mta`` listening as ``MTA-v4`` on port 25 and
``MSP-v4`` on 587, local submissions through the ``sendmail`` command, the mail submission
queue runner ``sm-msp-queue``) and writes its syslog in time order, the lines of concurrent SMTP
sessions, delivery processes and queue runs interleaved as syslog receives them. Every message
is simulated from its envelope line to its ``done;`` (or to the end of the log) before its lines
are queued, so per message the lines agree.

The line shapes are those of ``sample_logs/sendmail/real-sendmail-8.17.log`` (recorded from a
real Sendmail 8.17, Debian 12's sendmail-bin) and of the docstring of
``parsers/sendmaillog.py`` (the equates of "sendmail", 4th edition, chapter 14, and the 8.13
Companion's table 14-1); the lines are written here from them:

- an SMTP server process per connection: ``NOQUEUE: connect from name [ip]``,
  ``tls_srv_features=`` lookups and ``STARTTLS=server, relay=, version=, verify=NO, cipher=,
  bits=``, ``AUTH=server, relay=, authid=, mech=, bits=`` on the submission port, ``AUTH failure
  (MECH): ... user=, relay=`` for wrong passwords, ``ruleset=check_relay`` (DNSBL at connection),
  ``ruleset=check_mail`` and ``ruleset=check_rcpt`` refusals, ``<addr>... User unknown`` for a
  local address that does not exist, ``from=<>, size=, class=0, nrcpts=, msgid=<>, proto=,
  daemon=, relay=`` once a transaction ends (``size=0, nrcpts=0`` when every recipient was
  refused, ``size=0`` without ``msgid=`` when the client went after RCPT), ``did not issue
  MAIL/EXPN/VRFY/ETRN``, ``lost input channel from ... after ...``;
- a delivery process forked for each accepted message (``DeliveryMode=background``):
  ``tls_clt_features=`` lookups and ``STARTTLS=client`` per SMTP connection, then ``to=`` lines
  (``ctladdr=`` for a local sender, ``delay=``, ``xdelay=``, ``mailer=``, ``pri=`` growing by
  90000 per attempt, ``relay=``, ``dsn=``, ``reply=`` for refusals, ``stat=Sent (reply)``,
  ``stat=Deferred: ...``, the failure text); the recipients one SMTP transaction accepted share
  one line, each refusal at RCPT has its own;
- deferred messages retried by queue runs (``-q15m``; one process per run, messages in turn);
  past ``Timeout.queuewarning`` a ``QID: NEWQID: sender notify: Warning: could not send message
  for past 1 hour``, past ``Timeout.queuereturn`` the last attempt's deferrals, then ``sender
  notify: Cannot send message for 4 hours`` (the message expires); a failure makes a ``QID:
  NEWQID: DSN: <stat>`` (8.17 logs no ``from=`` for a notification: its own ``to=`` and
  ``done;`` follow); ``QID: done; delay=, ntries=`` when no recipient is left;
- local submissions: ``sendmail[pid]: NOQUEUE: connect from root@localhost``, ``from=root, ...,
  relay=root@localhost``, ``to=a,b, ctladdr=root (0/0), ..., mailer=relay, relay=[127.0.0.1]
  [127.0.0.1], dsn=2.0.0, stat=Sent (QID Message accepted for delivery)`` naming the queue id
  the MTA gave it; when the MTA refused the connection, ``stat=Deferred: Connection refused by
  [127.0.0.1]`` and a retry by ``sm-msp-queue``.

Queue ids are Sendmail 8.12's (queue.c ``assign_queueid``): eight base-60 characters, year
modulo 60, month, day, hour, minute and second of the process' first id, and a two-character
sequence from a random offset, then the process id in six digits (``62269Dxb012663``). Times are
UTC (ingest with ``--timezone UTC --year 2026``). Queue timing is compressed (queue run every
15 minutes, ``MinQueueAge`` 14 minutes, warning after 1 hour, return after 4 hours instead of
4 hours and 5 days) so that retries, warnings and expiries show in a log of a few hours.

``counts`` (``--counts FILE`` as JSON) says how many lines of each kind were written
(``line:KIND``, they add up to the lines) and what they mean for the store (``rcpt:STATUS``
deliveries, ``message`` first line of a queue id, ``arrived``, ``closed``, ``notification``,
``rejected-message``, ``expired``, ``event:KIND``, ``reject``, ``auth-fail``,
``ignored:RULE``), so a test can compare them with what the store holds.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from genio import write_chunked

HOST = "mx1"
MY_NAME = "mx1.example.com"
LOCAL_DOMAINS = ("example.com", "example.net", "example.org")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
B60 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx"  # queue.c QueueIdChars
DEFAULT_START = datetime(2026, 3, 2, 6, 0, 0, tzinfo=UTC)
VERSION = "8.17.1.9"
FIRST = ("anna", "ben", "carla", "dave", "emma", "felix", "greta", "hugo", "ines", "jonas",
         "katja", "lars", "mia", "nils", "olga", "paul", "rosa", "sven", "tina", "uwe", "vera",
         "info", "sales", "support", "billing", "jobs", "office")  # fmt: skip
LAST = ("meyer", "schmidt", "nguyen", "garcia", "smith", "rossi", "novak", "kowalski", "jensen",
        "dubois", "silva", "tanaka", "ali", "berg", "costa", "weber", "fischer", "moreau")  # fmt: skip
CIPHERS = ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256")
DNSBLS = ("zen.spamhaus.org", "b.barracudacentral.org", "bl.spamcop.net")
RECIPIENT_FACTOR = 30000  # sendmail.cf RecipientFactor: pri= grows by it per recipient
RETRY_FACTOR = 90000  # RetryFactor: and by this per delivery attempt
LINES_PER_SESSION = 6.0  # lines written per session, on average (measured, seeds 1-3)


@dataclass(frozen=True, slots=True, kw_only=True)
class GenConfig:
    """Knobs of the simulated host (timing compressed, see the module docstring)."""

    lines: int
    seed: int = 1
    start: datetime = DEFAULT_START
    sessions_per_second: float = 6.0
    queue_interval: float = 900.0  # sm-mta -q15m
    min_queue_age: float = 840.0  # confMIN_QUEUE_AGE
    queue_warning: float = 3600.0  # Timeout.queuewarning (default 4h)
    queue_return: float = 4 * 3600.0  # Timeout.queuereturn (default 5d)


@dataclass(frozen=True, slots=True, kw_only=True)
class GenStats:
    lines: int
    bytes: int
    seconds: float
    counts: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Remote:
    domain: str
    mx: str  # MX host name (Sendmail logs it with the root's dot)
    ip: str
    ok: str  # the 250 reply's text after the code; {q} a remote queue id
    unknown: str  # a 5xx reply to RCPT for a bad address
    tempfail: str  # a 4xx reply to RCPT
    tls: bool
    verified: bool
    dead: str = ""  # "timeout" or "refused": no MX answers
    nxdomain: bool = False  # the domain does not exist (a typo)


@dataclass(slots=True)
class _Proc:
    """One Sendmail process: its pid and the state of assign_queueid()."""

    tag: str
    pid: int
    base: int = -1  # the time of its first queue id (LastQueueTime)
    seq: int = 0


@dataclass(slots=True)
class _Rcpt:
    addr: str
    remote: _Remote | None  # None: a local mailbox
    sticky: bool = False  # a mailbox that answers 4xx for hours


@dataclass(slots=True)
class _Msg:
    qid: str
    sender: str  # "" for <>
    size: int
    nrcpt: int
    queued: float  # the envelope line's time (delay= counts from it)
    ctladdr: str | None
    tries: int = 0
    final: int = 0
    closed: bool = False
    warned: bool = False


@dataclass(slots=True)
class _Run:
    """A queue run: one process that works through the queue in turn."""

    proc: _Proc
    cursor: float


def pintvl(seconds: float) -> str:
    """``delay=`` / ``xdelay=`` (Sendmail's pintvl): ``HH:MM:SS``, ``D+HH:MM:SS`` from a day."""
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}+{h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def spoken(seconds: float) -> str:
    """The interval of a notification's subject: ``1 hour``, ``4 hours``, ``40 seconds``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{int(seconds)} seconds"


class _Sim:
    def __init__(self, cfg: GenConfig) -> None:
        self.cfg = cfg
        rng = self.rng = random.Random(cfg.seed)
        self.heap: list[tuple[float, int, str, tuple[str, ...]]] = []
        self.seq = itertools.count()
        self._pid = rng.randrange(2000, 30000)
        self.id_offset = rng.randrange(3600)  # random_offset of assign_queueid()
        self.mta = _Proc("sm-mta", self._new_pid())
        self.msp = _Proc("sm-msp-queue", self._new_pid())
        self.q0 = cfg.start.timestamp() + rng.uniform(30, cfg.queue_interval)
        self.runs: dict[int, _Run] = {}
        self.users = [(f"{rng.choice(FIRST)}.{rng.choice(LAST)}", rng.choice(LOCAL_DOMAINS),
                       rng.randrange(1000, 3000)) for _ in range(300)]  # fmt: skip
        self.users = list({u[0] + "@" + u[1]: u for u in self.users}.values())
        self.remotes = self._make_remotes()
        self.remote_addrs = [self._remote_addr() for _ in range(3000)]
        self.clients = [self._make_client() for _ in range(3000)]
        self.spammers = [self._ip() for _ in range(2000)]

    # ---- identities ---------------------------------------------------------------------------
    def _new_pid(self) -> int:
        self._pid += self.rng.randrange(1, 9)
        if self._pid > 4194304:  # Linux pid_max on 64-bit
            self._pid = 300
        return self._pid

    def proc(self, tag: str = "sm-mta") -> _Proc:
        return _Proc(tag, self._new_pid())

    def qid(self, p: _Proc, t: float) -> str:
        """The next queue id of process ``p`` at ``t`` (queue.c assign_queueid)."""
        if p.base < 0 or p.seq >= 3600:
            p.base = max(int(t), p.base + 1)
            p.seq = 0
        tm = time.gmtime(p.base)
        c = (p.seq + self.id_offset) % 3600
        p.seq += 1
        return (
            f"{B60[(tm.tm_year - 1900) % 60]}{B60[tm.tm_mon - 1]}{B60[tm.tm_mday]}"
            f"{B60[tm.tm_hour]}{B60[tm.tm_min]}{B60[tm.tm_sec]}{B60[c // 60]}{B60[c % 60]}"
            f"{p.pid:06d}"
        )

    def _ip(self) -> str:
        r = self.rng.randrange
        first = r(1, 224)
        while first in (10, 127, 172, 192, 169, 100):  # clear of private and special ranges
            first = r(1, 224)
        return f"{first}.{r(0, 256)}.{r(0, 256)}.{r(1, 255)}"

    def _make_client(self) -> tuple[str, bool]:
        """(relay= text, speaks TLS) of a remote MTA that sends us mail."""
        rng = self.rng
        ip = self._ip()
        roll = rng.random()
        if roll < 0.4:
            name = f"mail-{rng.choice(('ed1', 'wm1', 'oi1', 'pj1'))}-f{rng.randrange(100, 999)}.google.com"
            return f"{name} [{ip}]", True
        if roll < 0.8:
            dom = f"{rng.choice(LAST)}-{rng.choice(('gmbh', 'corp', 'shop', 'net'))}.{rng.choice(('de', 'com', 'fr', 'nl'))}"
            forged = " (may be forged)" if rng.random() < 0.05 else ""
            return f"mail{rng.randrange(1, 9)}.{dom} [{ip}]{forged}", rng.random() < 0.8
        return f"[{ip}]", rng.random() < 0.5

    def _make_remotes(self) -> list[_Remote]:
        rng = self.rng
        out = [
            _Remote(domain="gmail.com", mx="gmail-smtp-in.l.google.com.", ip="142.250.27.26",
                    ok="2.0.0 OK  {t} {q} - gsmtp", tls=True, verified=True,
                    unknown="550 5.1.1 The email account that you tried to reach does not exist. {q} - gsmtp",
                    tempfail="450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. {q} - gsmtp"),
            _Remote(domain="outlook.com", mx="outlook-com.olc.protection.outlook.com.",
                    ip="52.101.68.11", ok="2.6.0 <{q}@{d}> [InternalId={t}] Queued mail for delivery",
                    tls=True, verified=True,
                    unknown="550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)",
                    tempfail="451 4.7.500 Server busy. Please try again later from [198.51.100.25]. (S77719)"),
            _Remote(domain="yahoo.com", mx="mta7.am0.yahoodns.net.", ip="67.195.204.72",
                    ok="ok dirdel", tls=True, verified=True,
                    unknown="554 5.7.1 Sorry, your message could not be delivered [TSS08]",
                    tempfail="421 4.7.0 [TSS04] Messages from 198.51.100.25 temporarily deferred due to unexpected volume or user complaints"),
            _Remote(domain="gmx.de", mx="mx00.emig.gmx.net.", ip="212.227.15.9",
                    ok="Requested mail action okay, completed: id={q}", tls=True, verified=True,
                    unknown="550 5.1.1 Requested action not taken: mailbox unavailable",
                    tempfail="452 4.2.2 Mailbox full"),
        ]  # fmt: skip
        for i in range(60):
            dom = f"{rng.choice(LAST)}{i}-{rng.choice(('gmbh', 'corp', 'shop', 'net'))}.{rng.choice(('de', 'com', 'fr', 'nl'))}"
            dead = ""
            if i % 20 == 7:
                dead = "timeout"
            elif i % 20 == 13:
                dead = "refused"
            out.append(
                _Remote(domain=dom, mx=f"mx{rng.randrange(1, 3)}.{dom}.", ip=self._ip(),
                        ok="2.0.0 Ok: queued as {q}", tls=rng.random() < 0.75,
                        verified=rng.random() < 0.6, dead=dead,
                        unknown="550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table",
                        tempfail="451 4.7.1 <{r}>: Recipient address rejected: Greylisted, try again later")
            )  # fmt: skip
        out.append(_Remote(domain="gmial.com", mx="", ip="", ok="", unknown="", tempfail="",
                           tls=False, verified=False, nxdomain=True))  # fmt: skip
        return out

    def _remote_addr(self) -> tuple[str, _Remote]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            rem = self.remotes[0]
        elif roll < 0.5:
            rem = self.remotes[1]
        elif roll < 0.58:
            rem = self.remotes[2]
        elif roll < 0.64:
            rem = self.remotes[3]
        elif roll < 0.645:
            rem = self.remotes[-1]
        else:
            rem = rng.choice(self.remotes[4:-1])
        sep = rng.choice((".", "_", ""))
        return f"{rng.choice(FIRST)}{sep}{rng.choice(LAST)}{rng.randrange(100)}@{rem.domain}", rem

    def _fill(self, text: str, rcpt: str) -> str:
        rng = self.rng
        q = "".join(rng.choices(B60, k=12))
        return text.format(q=q, t=rng.randrange(10**9, 10**10), r=rcpt, d=MY_NAME)

    # ---- output -------------------------------------------------------------------------------
    def emit(self, t: float, p: _Proc, text: str, kind: str, *tags: str) -> None:
        """Queue one line; ``kind`` and ``tags`` are counted when it is written."""
        heapq.heappush(
            self.heap, (t, next(self.seq), f"{p.tag}[{p.pid}]: {text}", ("line:" + kind, *tags))
        )

    # ---- sessions -----------------------------------------------------------------------------
    def session(self, t: float) -> None:
        roll = self.rng.random()
        if roll < 0.50:
            self.inbound(t)
        elif roll < 0.62:
            self.submission(t)
        elif roll < 0.66:
            self.local_submission(t)
        elif roll < 0.84:
            self.spam(t)
        elif roll < 0.90:
            self.auth_attack(t)
        else:
            self.odd(t)

    def _connect(self, t: float, relay: str, tls: bool) -> tuple[_Proc, float]:
        p = self.proc()
        self.emit(t, p, f"NOQUEUE: connect from {relay}", "connect", "event:connect")
        if tls:
            t += self.rng.uniform(0.05, 0.3)
            self.emit(t, p, f"tls_srv_features=(null), relay={relay}", "tls-features",
                      "ignored:sendmail-tls-features")  # fmt: skip
            self.emit(t, p, f"tls_srv_features=empty, stat=0, relay={relay}", "tls-features",
                      "ignored:sendmail-tls-features")  # fmt: skip
            t += self.rng.uniform(0.01, 0.1)
            self.emit(t, p, f"STARTTLS=server, relay={relay}, version=TLSv1.3, verify=NO, "
                      f"cipher={self.rng.choice(CIPHERS)}, bits=256/256", "starttls-server",
                      "event:tls-anonymous")  # fmt: skip
        return p, t

    def _msgid(self, relay: str) -> str:
        rng = self.rng
        if "google.com" in relay:
            return f"CA+{''.join(rng.choices(B60, k=30))}@mail.gmail.com"
        host = relay.split(" ")[0].strip("[]")
        return f"{rng.randrange(10**11, 10**12)}.{''.join(rng.choices(B60, k=10))}@{host}"

    def inbound(self, t: float) -> None:
        """Mail from the Internet to local mailboxes; some recipients refused at RCPT."""
        rng = self.rng
        relay, tls = rng.choice(self.clients)
        p, t = self._connect(t, relay, tls)
        for _ in range(2 if rng.random() < 0.1 else 1):
            t += rng.uniform(0.2, 2)
            qid = self.qid(p, t)
            first = True
            addrs = {f"{u[0]}@{u[1]}" for u in rng.sample(self.users, rng.choice((1, 1, 1, 2, 3)))}
            sender = rng.choice(self.remote_addrs)[0] if rng.random() < 0.95 else ""
            roll = rng.random()
            if roll < 0.07:  # a local address that does not exist
                who = f"{rng.choice(FIRST)}{rng.randrange(10, 99)}@{rng.choice(LOCAL_DOMAINS)}"
                t += rng.uniform(0.05, 0.3)
                self.emit(t, p, f"{qid}: <{who}>... User unknown", "reject-unknown", "reject",
                          "message", "rejected-message")  # fmt: skip
                first = False
            elif roll < 0.1:  # a relay attempt among the recipients
                who = rng.choice(self.remote_addrs)[0]
                t += rng.uniform(0.05, 0.3)
                self.emit(t, p, f"{qid}: ruleset=check_rcpt, arg1=<{who}>, relay={relay}, "
                          f"reject=550 5.7.1 <{who}>... Relaying denied", "reject-rcpt",
                          "reject", "message", "rejected-message")  # fmt: skip
                first = False
            t += rng.uniform(0.3, 3)
            if rng.random() < 0.015:  # the client went after RCPT: Sendmail logs what it had
                self.emit(t, p, f"{qid}: lost input channel from {relay} to MTA-v4 after rcpt",
                          "lost", "event:lost-connection")  # fmt: skip
                self.emit(t, p, f"{qid}: from=<{sender}>, size=0, class=0, nrcpts={len(addrs)}, "
                          f"proto={'ESMTPS' if tls else 'ESMTP'}, daemon=MTA-v4, relay={relay}",
                          "from", "arrived", "closed", *(("message",) if first else ()))  # fmt: skip
                return
            size = int(rng.lognormvariate(8.6, 1.1)) + 400
            body = ", bodytype=8BITMIME" if rng.random() < 0.3 else ""
            rcpts = [_Rcpt(a, None) for a in sorted(addrs)]
            self.emit(t, p, f"{qid}: from=<{sender}>, size={size}, class=0, nrcpts={len(rcpts)}, "
                      f"msgid=<{self._msgid(relay)}>{body}, proto={'ESMTPS' if tls else 'ESMTP'}, "
                      f"daemon=MTA-v4, relay={relay}", "from", "arrived",
                      *(("message",) if first else ()))  # fmt: skip
            msg = _Msg(qid=qid, sender=sender, size=size, nrcpt=len(rcpts), queued=t,
                       ctladdr=None)  # fmt: skip
            self.deliver(self.proc(), t + rng.uniform(0.01, 0.2), msg, rcpts)

    def _outbound_rcpts(self) -> list[_Rcpt]:
        rng = self.rng
        n = rng.choice((1, 1, 1, 1, 2, 2, 3, 5))
        seen: dict[str, _Rcpt] = {}
        for _ in range(n):
            if rng.random() < 0.12:
                u = rng.choice(self.users)
                seen.setdefault(f"{u[0]}@{u[1]}", _Rcpt(f"{u[0]}@{u[1]}", None))
            else:
                addr, rem = rng.choice(self.remote_addrs)
                seen.setdefault(addr, _Rcpt(addr, rem))
        return [seen[a] for a in sorted(seen)]

    def submission(self, t: float) -> None:
        """A local user's client on port 587: TLS, AUTH, mail out."""
        rng = self.rng
        relay = rng.choice(
            (f"[{self._ip()}]", f"dyn-{rng.randrange(1, 255)}.isp.example [{self._ip()}]")
        )
        p, t = self._connect(t, relay, True)
        local, dom, uid = rng.choice(self.users)
        t += rng.uniform(0.1, 0.5)
        self.emit(t, p, f"AUTH=server, relay={relay}, authid={local}@{dom}, "
                  f"mech={rng.choice(('PLAIN', 'LOGIN'))}, bits=0", "auth-server",
                  "event:sasl-server")  # fmt: skip
        qid = self.qid(p, t)
        rcpts = self._outbound_rcpts()
        size = int(rng.lognormvariate(9.2, 1.3)) + 500
        t += rng.uniform(0.5, 5)
        sender = f"{local}@{dom}"
        self.emit(t, p, f"{qid}: from=<{sender}>, size={size}, class=0, nrcpts={len(rcpts)}, "
                  f"msgid=<{rng.randrange(10**9, 10**10)}.{''.join(rng.choices(B60, k=8))}@{dom}>, "
                  f"proto=ESMTPSA, daemon=MSP-v4, relay={relay}", "from", "arrived",
                  "message")  # fmt: skip
        msg = _Msg(qid=qid, sender=sender, size=size, nrcpt=len(rcpts), queued=t,
                   ctladdr=f"<{sender}> ({uid}/{uid})")  # fmt: skip
        self.deliver(self.proc(), t + rng.uniform(0.01, 0.2), msg, rcpts)

    def local_submission(self, t: float) -> None:
        """``sendmail`` run by cron or a web application: the MSP hands the message to the
        MTA on 127.0.0.1 (or queues it, and sm-msp-queue retries)."""
        rng = self.rng
        user, uid = rng.choice((("root", 0), ("root", 0), ("www-data", 33), ("backup", 34)))
        msp = self.proc("sendmail")
        self.emit(t, msp, f"NOQUEUE: connect from {user}@localhost", "connect", "event:connect")
        t += rng.uniform(0.01, 0.05)
        mqid = self.qid(msp, t)
        rcpts = self._outbound_rcpts()
        size = rng.randrange(300, 6000)
        self.emit(t, msp, f"{mqid}: from={user}, size={size}, class=0, nrcpts={len(rcpts)}, "
                  f"msgid=<{datetime.fromtimestamp(t, UTC):%Y%m%d%H%M}.{mqid}@{MY_NAME}>, "
                  f"relay={user}@localhost", "from", "arrived", "message")  # fmt: skip
        mmsg = _Msg(qid=mqid, sender=user, size=size, nrcpt=len(rcpts), queued=t,
                    ctladdr=f"{user} ({uid}/{uid})")  # fmt: skip
        t += rng.uniform(0.02, 0.2)
        if rng.random() < 0.03:  # the MTA was not accepting: the MSP queue keeps it
            self._msp_attempt(msp, t, mmsg, rcpts, ok=False)
            when = self._next_run(t + self.cfg.min_queue_age, self.cfg.queue_interval * 4 / 3)
            self._msp_attempt(self.proc("sm-msp-queue"), when, mmsg, rcpts, ok=True)
        else:
            self._msp_attempt(msp, t, mmsg, rcpts, ok=True)

    def _msp_attempt(self, p: _Proc, t: float, mmsg: _Msg, rcpts: list[_Rcpt], *, ok: bool) -> None:
        rng = self.rng
        to = ",".join(r.addr for r in rcpts)
        pri = mmsg.size + RECIPIENT_FACTOR * mmsg.nrcpt + RETRY_FACTOR * mmsg.tries
        mmsg.tries += 1
        head = (f"{mmsg.qid}: to={to}, ctladdr={mmsg.ctladdr}, delay={pintvl(t - mmsg.queued)}, "
                f"xdelay=00:00:00, mailer=relay, pri={pri}, relay=[127.0.0.1] [127.0.0.1]")  # fmt: skip
        if not ok:
            self.emit(t, p, f"{head}, dsn=4.0.0, stat=Deferred: Connection refused by [127.0.0.1]",
                      "to", *(["rcpt:deferred"] * len(rcpts)))  # fmt: skip
            return
        # the MTA side: one SMTP session from localhost
        srv = self.proc()
        relay = "localhost [127.0.0.1]"
        self.emit(t, srv, f"NOQUEUE: connect from {relay}", "connect", "event:connect")
        t += rng.uniform(0.01, 0.05)
        qid = self.qid(srv, t)
        sender = f"{mmsg.sender}@{MY_NAME}"
        self.emit(t, srv, f"{qid}: from=<{sender}>, size={mmsg.size + 320}, class=0, "
                  f"nrcpts={len(rcpts)}, msgid=<{mmsg.qid}@{MY_NAME}>, proto=ESMTP, "
                  f"daemon=MTA-v4, relay={relay}", "from", "arrived", "message")  # fmt: skip
        t += rng.uniform(0.001, 0.01)
        self.emit(t, p, f"{head}, dsn=2.0.0, stat=Sent ({qid} Message accepted for delivery)",
                  "to", *(["rcpt:sent"] * len(rcpts)), "closed")  # fmt: skip
        self.emit(t + 0.001, p, f"{mmsg.qid}: done; delay={pintvl(t - mmsg.queued)}, "
                  f"ntries={mmsg.tries}", "done")  # fmt: skip
        uid = 0 if mmsg.sender == "root" else 33
        msg = _Msg(qid=qid, sender=sender, size=mmsg.size + 320, nrcpt=len(rcpts), queued=t,
                   ctladdr=f"<{sender}> ({uid}/{uid})")  # fmt: skip
        fresh = [_Rcpt(r.addr, r.remote) for r in rcpts]
        self.deliver(self.proc(), t + rng.uniform(0.01, 0.1), msg, fresh)

    def spam(self, t: float) -> None:
        """Refused at connection (DNSBL), at MAIL (sender domain) or at every RCPT."""
        rng = self.rng
        ip = rng.choice(self.spammers)
        relay = f"[{ip}]"
        p, t = self._connect(t, relay, rng.random() < 0.3)
        roll = rng.random()
        t += rng.uniform(0.1, 1.5)
        if roll < 0.4:
            bl = rng.choice(DNSBLS)
            self.emit(t, p, f"ruleset=check_relay, arg1={relay}, arg2={ip}, relay={relay}, "
                      f"reject=554 5.7.1 Rejected {ip} found in {bl}", "reject-relay",
                      "reject")  # fmt: skip
            return
        qid = self.qid(p, t)
        fake = f"{rng.choice(FIRST)}@{rng.choice(LAST)}-{rng.randrange(1000)}.invalid"
        if roll < 0.55:
            self.emit(t, p, f"{qid}: ruleset=check_mail, arg1=<{fake}>, relay={relay}, "
                      f"reject=553 5.1.8 <{fake}>... Domain of sender address {fake} does not "
                      "exist", "reject-mail", "reject", "message", "rejected-message")  # fmt: skip
            return
        tags: tuple[str, ...] = ("message", "rejected-message")
        for _ in range(rng.randrange(1, 4)):
            t += rng.uniform(0.1, 0.8)
            if rng.random() < 0.5:
                who = f"{rng.choice(FIRST)}{rng.randrange(10, 99)}@{rng.choice(LOCAL_DOMAINS)}"
                self.emit(t, p, f"{qid}: <{who}>... User unknown", "reject-unknown", "reject",
                          *tags)  # fmt: skip
            else:
                who = rng.choice(self.remote_addrs)[0]
                self.emit(t, p, f"{qid}: ruleset=check_rcpt, arg1=<{who}>, relay={relay}, "
                          f"reject=550 5.7.1 <{who}>... Relaying denied. IP name lookup failed "
                          f"[{ip}]", "reject-rcpt", "reject", *tags)  # fmt: skip
            tags = ()
        t += rng.uniform(0.1, 2)
        self.emit(t, p, f"{qid}: from=<{fake}>, size=0, class=0, nrcpts=0, proto=ESMTP, "
                  f"daemon=MTA-v4, relay={relay}", "from", "arrived", "closed")  # fmt: skip

    def auth_attack(self, t: float) -> None:
        """Password guessing on the submission port."""
        rng = self.rng
        ip = rng.choice(self.spammers)
        relay = f"[{ip}]"
        p, t = self._connect(t, relay, rng.random() < 0.5)
        qid = self.qid(p, t)
        for _ in range(rng.randrange(1, 4)):
            t += rng.uniform(1, 6)
            local, _dom, _uid = rng.choice(self.users)
            user = local if rng.random() < 0.6 else rng.choice(("admin", "test", "info"))
            mech = rng.choice(("PLAIN", "LOGIN"))
            why = ("authentication failure (-13) SASL(-13): authentication failure: Password "
                   "verification failed") if mech == "PLAIN" else ("authentication failure (-13) "
                   "SASL(-13): authentication failure: checkpass failed")  # fmt: skip
            self.emit(t, p, f"{qid}: AUTH failure ({mech}): {why}, user={user}, relay={relay}",
                      "auth-fail", "auth-fail")  # fmt: skip
        t += rng.uniform(0.1, 2)
        self.emit(t, p, f"{qid}: {relay} did not issue MAIL/EXPN/VRFY/ETRN during connection to "
                  "MSP-v4", "no-mail", "event:no-mail")  # fmt: skip

    def odd(self, t: float) -> None:
        """Scanners and broken clients: no MAIL, gone after EHLO or STARTTLS."""
        rng = self.rng
        ip = rng.choice(self.spammers)
        relay = f"[{ip}]" if rng.random() < 0.6 else f"scan-{rng.randrange(99)}.example [{ip}]"
        p, t = self._connect(t, relay, False)
        t += rng.uniform(0.5, 20)
        qid = self.qid(p, t)
        if rng.random() < 0.6:
            self.emit(t, p, f"{qid}: {relay} did not issue MAIL/EXPN/VRFY/ETRN during connection "
                      "to MTA-v4", "no-mail", "event:no-mail")  # fmt: skip
        else:
            after = rng.choice(("ehlo", "helo"))
            self.emit(t, p, f"{qid}: lost input channel from {relay} to MTA-v4 after {after}",
                      "lost", "event:lost-connection")  # fmt: skip

    # ---- delivery -----------------------------------------------------------------------------
    def _next_run(self, t: float, spread: float = 60.0) -> float:
        every = self.cfg.queue_interval
        k = -(-(t - self.q0) // every)
        return self.q0 + k * every + self.rng.uniform(0.2, spread)

    def _run_at(self, t: float) -> _Run:
        """The queue run that picks up a message ready at ``t``."""
        every = self.cfg.queue_interval
        k = int(-(-(t - self.q0) // every))
        run = self.runs.get(k)
        if run is None:
            run = self.runs[k] = _Run(self.proc(), self.q0 + k * every + self.rng.uniform(0, 2))
            for old in [j for j in self.runs if j < k - 50]:
                del self.runs[old]
        return run

    def _to(self, t: float, p: _Proc, msg: _Msg, rcpts: list[_Rcpt], tail: str, status: str,
            start: float) -> None:  # fmt: skip
        """One ``to=`` line for ``rcpts`` of ``msg`` with ``status``."""
        to = ",".join(f"<{r.addr}>" for r in rcpts)
        ctl = f", ctladdr={msg.ctladdr}" if msg.ctladdr else ""
        pri = msg.size + RECIPIENT_FACTOR * msg.nrcpt + RETRY_FACTOR * (msg.tries - 1)
        tags = ["rcpt:" + status] * len(rcpts)
        if status != "deferred":
            msg.final += len(rcpts)
            if msg.final >= msg.nrcpt and not msg.closed:
                msg.closed = True
                tags.append("closed")
        self.emit(t, p, f"{msg.qid}: to={to}{ctl}, delay={pintvl(t - msg.queued)}, "
                  f"xdelay={pintvl(t - start)}, {tail.format(pri=pri)}", "to", *tags)  # fmt: skip

    def deliver(self, p: _Proc, t: float, msg: _Msg, pending: list[_Rcpt]) -> None:
        """Delivery attempts of ``msg``, the first by process ``p`` at ``t``, then by queue
        runs (each works through its messages in turn) until no recipient is left."""
        run: _Run | None = None
        while True:
            t, pending = self.attempt(p, t, msg, pending)
            if run is not None:
                run.cursor = t  # the run goes on with its next message
            if not pending:
                return
            run = self._run_at(t + self.cfg.min_queue_age)
            run.cursor += self.rng.uniform(0.05, 0.5)
            p, t = run.proc, run.cursor

    def attempt(
        self, p: _Proc, t: float, msg: _Msg, pending: list[_Rcpt]
    ) -> tuple[float, list[_Rcpt]]:
        """One delivery attempt of ``pending``: when its lines end, and what is left."""
        rng = self.rng
        cfg = self.cfg
        msg.tries += 1
        left: list[_Rcpt] = []
        failed: list[str] = []  # the stat= texts of the failures, in order
        expire = t - msg.queued >= cfg.queue_return
        for r in [r for r in pending if r.remote is None]:
            start = t
            t += rng.uniform(0.005, 0.08)
            if rng.random() < 0.01 and not expire:
                self._to(t, p, msg, [r], "mailer=local, pri={pri}, dsn=4.0.0, stat=Deferred: "
                         "local mailer (/usr/lib/sm.bin/mail.local) exited with EX_TEMPFAIL",
                         "deferred", start)  # fmt: skip
                left.append(r)
            else:
                self._to(t, p, msg, [r], "mailer=local, pri={pri}, dsn=2.0.0, stat=Sent", "sent",
                         start)  # fmt: skip
        groups: dict[str, list[_Rcpt]] = {}
        for r in pending:
            if r.remote is not None:
                groups.setdefault(r.remote.domain, []).append(r)
        for group in groups.values():
            rem = group[0].remote
            assert rem is not None
            start = t
            t += rng.uniform(0.05, 1.2)
            if rem.nxdomain:
                self._to(t, p, msg, group, "mailer=esmtp, pri={pri}, dsn=5.1.2, stat=Host unknown "
                         f"(Name server: {rem.domain}.: host not found)", "bounced", start)  # fmt: skip
                failed.append(f"Host unknown (Name server: {rem.domain}.: host not found)")
                continue
            if rem.dead:
                t += 15 if rem.dead == "timeout" else 0.0
                why = (f"Connection timed out with {rem.mx}" if rem.dead == "timeout"
                       else f"Connection refused by {rem.mx}")  # fmt: skip
                self._to(t, p, msg, group, "mailer=esmtp, pri={pri}, "
                         f"relay={rem.mx}, dsn=4.0.0, stat=Deferred: {why}", "deferred", start)  # fmt: skip
                left.extend(group)
                continue
            relay = f"relay={rem.mx} [{rem.ip}]"
            if rem.tls:
                lookup = f"relay={rem.mx.rstrip('.')} [{rem.ip}]"
                self.emit(t, p, f"tls_clt_features=(null), {lookup}", "tls-features",
                          "ignored:sendmail-tls-features")  # fmt: skip
                self.emit(t, p, f"tls_clt_features=empty, stat=0, {lookup}", "tls-features",
                          "ignored:sendmail-tls-features")  # fmt: skip
                t += rng.uniform(0.02, 0.2)
                verify = "OK" if rem.verified else "FAIL"
                self.emit(t, p, f"STARTTLS=client, relay={rem.mx.rstrip('.')}, version=TLSv1.3, "
                          f"verify={verify}, cipher={rng.choice(CIPHERS)}, bits=256/256",
                          "starttls-client",
                          "event:tls-verified" if rem.verified else "event:tls-untrusted")  # fmt: skip
            accepted: list[_Rcpt] = []
            for r in group:
                t += rng.uniform(0.01, 0.2)
                roll = rng.random()
                if roll < 0.035 and not r.sticky:
                    reply = self._fill(rem.unknown, r.addr)
                    code = reply[:3]
                    dsn = {"550": "5.1.1", "552": "5.2.2"}.get(code, "5.0.0")
                    stat = "User unknown" if code == "550" else "Service unavailable"
                    self._to(t, p, msg, [r], f"mailer=esmtp, pri={{pri}}, {relay}, dsn={dsn}, "
                             f"reply={reply}, stat={stat}", "bounced", start)  # fmt: skip
                    failed.append(stat)
                elif r.sticky or (roll < 0.035 + (0.12 if msg.tries == 1 else 0.05)):
                    reply = self._fill(rem.tempfail, r.addr)
                    dsn = "4.0.0" if reply.startswith("421") else reply.split(" ", 2)[1]
                    self._to(t, p, msg, [r], f"mailer=esmtp, pri={{pri}}, {relay}, dsn={dsn}, "
                             f"reply={reply}, stat=Deferred: {reply}", "deferred", start)  # fmt: skip
                    if not r.sticky and rng.random() < 0.1:
                        r.sticky = True
                    left.append(r)
                else:
                    accepted.append(r)
            if accepted:
                t += rng.uniform(0.05, 1.5)
                ok = self._fill(rem.ok, accepted[0].addr)
                self._to(t, p, msg, accepted, f"mailer=esmtp, pri={{pri}}, {relay}, dsn=2.0.0, "
                         f"stat=Sent ({ok})", "sent", start)  # fmt: skip
        if failed:
            t = self.notify(p, t + rng.uniform(0.001, 0.02), msg, f"DSN: {failed[-1]}")
        if left and expire:
            t = self.notify(p, t + rng.uniform(0.001, 0.02), msg, "sender notify: Cannot send "
                            f"message for {spoken(cfg.queue_return)}", expired=True)  # fmt: skip
            left = []
        elif left and not msg.warned and t - msg.queued >= cfg.queue_warning:
            msg.warned = True
            t = self.notify(p, t + rng.uniform(0.001, 0.02), msg, "sender notify: Warning: could "
                            f"not send message for past {spoken(cfg.queue_warning)}")  # fmt: skip
        if not left:
            t += rng.uniform(0.001, 0.01)
            self.emit(t, p, f"{msg.qid}: done; delay={pintvl(t - msg.queued)}, "
                      f"ntries={msg.tries}", "done")  # fmt: skip
        return t, left

    def notify(
        self, p: _Proc, t: float, msg: _Msg, subject: str, *, expired: bool = False
    ) -> float:
        """The notification ``NEWQID`` about ``msg`` to its sender, delivered at once; returns
        when its lines end."""
        rng = self.rng
        new = self.qid(p, t)
        tags = ["notification"]
        if expired:
            tags.append("expired")
            if not msg.closed:
                msg.closed = True
                tags.append("closed")
        kind = "delay" if subject.startswith("sender notify: Warning") else "non-delivery"
        self.emit(t, p, f"{msg.qid}: {new}: {subject}", "dsn-notice",
                  f"event:notification-{kind}", *tags)  # fmt: skip
        size = rng.randrange(1800, 6000) + msg.size // 4
        t += rng.uniform(0.005, 0.05)
        self.emit(t, p, f"{new}: to=<{msg.sender}>, delay=00:00:00, xdelay=00:00:00, "
                  f"mailer=local, pri={size + RECIPIENT_FACTOR}, dsn=2.0.0, stat=Sent",
                  "to", "rcpt:sent", "message", "bounce", "closed")  # fmt: skip
        self.emit(t + rng.uniform(0.001, 0.01), p, f"{new}: done; delay=00:00:00, ntries=1",
                  "done")  # fmt: skip
        return t


class _Clock:
    """``Mar  2 06:00:01 mx1 `` for a time in seconds, cached per second (lines come in time
    order)."""

    def __init__(self) -> None:
        self.sec = -1
        self.text = ""

    def __call__(self, t: float) -> str:
        sec = int(t)
        if sec != self.sec:
            self.sec = sec
            tm = time.gmtime(sec)
            self.text = (f"{MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:"
                         f"{tm.tm_min:02d}:{tm.tm_sec:02d} {HOST} ")  # fmt: skip
        return self.text


def generate(cfg: GenConfig) -> tuple[Iterator[str], Counter[str]]:
    """Lines (each ending in "\\n") in time order, and the counts of what the lines written so
    far hold (complete once the iterator is exhausted)."""
    sim = _Sim(cfg)
    counts: Counter[str] = Counter()
    return _lines(sim, counts), counts


def _lines(sim: _Sim, counts: Counter[str]) -> Iterator[str]:
    cfg = sim.cfg
    stamp = _Clock()
    heap = sim.heap
    pop = heapq.heappop
    expo = sim.rng.expovariate
    rate = cfg.sessions_per_second
    t0 = cfg.start.timestamp()
    next_arrival = t0 + 1
    produced = 0
    limit = cfg.lines
    sim.emit(t0, sim.mta, f"starting daemon ({VERSION}): SMTP+queueing@00:15:00", "daemon",
             "ignored:sendmail-daemon")  # fmt: skip
    sim.emit(t0, sim.msp, f"starting daemon ({VERSION}): queueing@00:20:00", "daemon",
             "ignored:sendmail-daemon")  # fmt: skip
    while produced < limit:
        # a session's lines (and its first delivery's) end well within 300 s of its start; a
        # retry is planned when its message is first delivered, long before it is due
        while not heap or heap[0][0] > next_arrival - 300:
            sim.session(next_arrival)
            next_arrival += expo(rate)
        t, _seq, text, tags = pop(heap)
        counts.update(tags)
        yield f"{stamp(t)}{text}\n"
        produced += 1


def write_log(cfg: GenConfig, out: IO[bytes]) -> GenStats:
    started = time.perf_counter()
    lines, counts = generate(cfg)
    n, total = write_chunked(lines, out)
    return GenStats(lines=n, bytes=total, seconds=time.perf_counter() - started,
                    counts=dict(sorted(counts.items())))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--out", type=Path, required=True, help="output file ('-' for stdout)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--start",
        type=datetime.fromisoformat,
        default=DEFAULT_START,
        help="simulated start time, ISO 8601 with offset [2026-03-02T06:00:00+00:00]",
    )
    ap.add_argument("--counts", type=Path, help="write what the lines hold, by kind (JSON)")
    args = ap.parse_args(argv)
    start = args.start if args.start.tzinfo else args.start.replace(tzinfo=UTC)
    cfg = GenConfig(lines=args.lines, seed=args.seed, start=start.astimezone(UTC))
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
        f"({stats.bytes / max(stats.lines, 1):.0f} B/line), {stats.counts.get('message', 0)} "
        f"queue ids in {stats.seconds:.1f}s ({rate:,.0f} lines/s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
