"""Seeded, streaming generator of realistic Postfix 3.x mail logs, for benchmarks and parser tests.

    python bench/gen_postfix_logs.py --lines 5000000 --out /tmp/x.log [--seed 1]
        [--style mixed|rfc3164|rfc3339] [--truth OUT.jsonl]

It simulates one busy MX + submission host (`mx1`, domains example.com/.net/.org) and writes the
lines in time order, interleaved the way a real server interleaves them: postscreen, smtpd
(port 25, `postfix/submission/smtpd` for port 587), cleanup, qmgr, smtp/lmtp/local/virtual/pipe/
error delivery agents, bounce notifications, an amavis-style content filter (re-injection with
`orig_queue_id=`/`orig_client=`), a second instance `postfix-out` for a few percent of outbound
mail, retries with back-off, expiry, queue-ID reuse, and `warning:`/`statistics:` noise.

Every message is simulated from arrival to `removed` before its lines are queued, so the lines
of one message are consistent: one queue ID from `client=` to `removed`, `nrcpt=` equals the
accepted recipients, `delay=` is the sum of `delays=a/b/c/d` (up to Postfix's rounding) and
grows with each retry. `--truth` writes, per recipient, the last outcome that made it into the
file (messages still in flight when the file ends keep their last logged status).

Where the line shapes come from (the lines are written here, from these descriptions):
- Postfix manual pages smtpd(8), postscreen(8), cleanup(8), qmgr(8), smtp(8), local(8),
  virtual(8), pipe(8), bounce(8), anvil(8), scache(8): https://www.postfix.org/postfix-manuals.html
- Delivery line fields and order (to, orig_to, relay, conn_use, delay, delays, dsn, status) and
  the `delays=a/b/c/d` meaning: postconf(5) `delay_logging_resolution_limit`, and
  https://www.postfix.org/postconf.5.html#delay_logging_resolution_limit (2 significant digits,
  at most 2 decimals, rounded).
- Queue ID forms: short = 5 hex digits of microseconds + inode in hex; long
  (`enable_long_queue_ids`, Postfix >= 2.9) = seconds (6+ chars) and microseconds (4 chars) in
  a base-52 vowel-free alphabet, `z`, inode in base 51 (postconf(5) enable_long_queue_ids;
  src/global/mail_queue.h describes the encoding).
- `NOQUEUE: reject: STAGE from CLIENT: REPLY; from=<> to=<> proto= helo=<>` (smtpd; `to=` only
  once a recipient is known, the queue ID instead of NOQUEUE once the queue file exists) and the
  comma-separated postscreen variant: SMTPD_ACCESS_README and POSTSCREEN_README.
- `disconnect from ... ehlo=1 mail=1 rcpt=0/1 ... commands=3/4` (Postfix >= 3.0, smtpd(8)).
- Remote reply texts are modelled on what the large providers answer (Gmail, Outlook, Yahoo,
  GMX) as seen in public Postfix logs; amavis' re-injection reply is `250 2.0.0 from
  MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as QUEUEID` (amavisd-new README.postfix).

Timestamps: RFC 3164 `Mar  2 06:00:01 mx1 postfix/smtpd[1234]: ` and RFC 3339
`2026-03-02T06:00:01.123456+00:00 mx1 ...` (rsyslog's RSYSLOG_FileFormat). `--style mixed`
chooses per line (50/50), as in a log merged from two syslog daemons; it is a parser stress mix.
Long queue IDs are likewise used for ~35% of the main instance's messages, and for all of the
`postfix-out` instance's.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from genio import write_chunked

HOST = "mx1"
MY_NAME = "mx1.example.com"
MY_IP = "198.51.100.25"
LOCAL_DOMAINS = ("example.com", "example.net", "example.org")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# mail_queue.h: the "safe" alphabet, digits and letters without vowels.
SAFE_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
TLS13 = (
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
    "server-signature RSA-PSS (2048 bits) server-digest SHA256"
)
TLS13_CLIENT = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519"
TLS12 = "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)"
DNSBLS = ("zen.spamhaus.org", "b.barracudacentral.org", "bl.spamcop.net")
FIRST = (
    "anna",
    "ben",
    "carla",
    "dave",
    "emma",
    "felix",
    "greta",
    "hugo",
    "ines",
    "jonas",
    "katja",
    "lars",
    "mia",
    "nils",
    "olga",
    "paul",
    "rosa",
    "sven",
    "tina",
    "uwe",
    "vera",
    "willi",
    "info",
    "sales",
    "support",
    "billing",
    "jobs",
    "noreply",
    "newsletter",
    "office",
)
LAST = (
    "meyer",
    "schmidt",
    "nguyen",
    "garcia",
    "smith",
    "rossi",
    "novak",
    "kowalski",
    "jensen",
    "dubois",
    "silva",
    "tanaka",
    "ali",
    "berg",
    "costa",
    "weber",
    "fischer",
    "moreau",
)
DEFAULT_START = datetime(2026, 3, 2, 6, 0, 0, tzinfo=UTC)
HELO_JUNK = ("User", "localhost", "ylmf-pc", "WIN-3K2HJ7L", "[127.0.0.1]")


class Style(StrEnum):
    MIXED = "mixed"
    RFC3164 = "rfc3164"
    RFC3339 = "rfc3339"


@dataclass(frozen=True, slots=True, kw_only=True)
class GenConfig:
    """Knobs of the simulated server. Queue timing follows postconf(5) defaults except
    `queue_lifetime`/`delay_warning`, shortened so that expiries and delay warnings show up in
    a log of a few hours (a real `maximal_queue_lifetime` is 5d)."""

    lines: int
    seed: int = 1
    style: Style = Style.MIXED
    start: datetime = DEFAULT_START
    sessions_per_second: float = 12.0
    long_id_share: float = 0.35
    reuse_share: float = 0.002  # share of new short queue IDs that reuse a retired ID
    reuse_after: float = 3600.0  # ... retired at least this long ago
    queue_lifetime: float = 3 * 3600.0
    delay_warning: float = 3600.0
    min_backoff: float = 300.0  # minimal_backoff_time
    max_backoff: float = 4000.0  # maximal_backoff_time
    queue_run_delay: float = 300.0
    noise_interval: float = 600.0  # anvil_status_update_time


@dataclass(frozen=True, slots=True, kw_only=True)
class GenStats:
    lines: int
    bytes: int
    seconds: float
    messages: int
    truth_rows: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Remote:
    domain: str
    mx: str
    ips: tuple[str, ...]
    # (dsn, reply) pairs; placeholders {r} recipient, {d} domain, {q} remote token, ...
    ok: tuple[tuple[str, str], ...]
    unknown: tuple[tuple[str, str], ...]
    tempfail: tuple[tuple[str, str], ...]
    tls: str  # "Trusted" / "Verified" / "Untrusted" / ""
    dead: bool = False  # MX never answers: mail to it is deferred until it expires


@dataclass(slots=True)
class _Msg:
    """One queued message while it is being simulated (not a record; mutable on purpose)."""

    qid: str
    inst: str
    arrival: float
    sender: str
    size: int
    rows: list[list[Any]] = field(default_factory=list)


def _fmt_delay(seconds: float) -> str:
    """Postfix format_tv(): 2 significant digits, at most 2 decimals, rounded, zeros stripped."""
    if seconds >= 10:
        return str(int(seconds + 0.5))
    if seconds >= 1:
        tenths = int(seconds * 10 + 0.5)
        return str(tenths // 10) if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}"
    hundredths = int(seconds * 100 + 0.5)
    if hundredths == 0:
        return "0"
    if hundredths == 100:
        return "1"
    return f"0.{hundredths:02d}".rstrip("0")


def _safe_encode(value: int, base: int, pad: int) -> str:
    digits = []
    while value:
        value, rem = divmod(value, base)
        digits.append(SAFE_ALPHABET[rem])
    out = "".join(reversed(digits)) or "0"
    return out.rjust(pad, "0")


class _PidPool:
    """Processes of one daemon: a pid is reused only once its previous session has ended."""

    __slots__ = ("_free", "_next")

    def __init__(self, nxt: Callable[[], int]) -> None:
        self._free: deque[tuple[float, int]] = deque()
        self._next = nxt

    def take(self, start: float, end: float) -> int:
        free = self._free
        pid = free.popleft()[1] if free and free[0][0] <= start else self._next()
        free.append((end, pid))
        return pid


class _Sim:
    def __init__(self, cfg: GenConfig, want_truth: bool) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.want_truth = want_truth
        self.heap: list[tuple[float, int, str, Any]] = []
        self.seq = itertools.count()
        self.truth: list[list[Any]] = []
        self.messages = 0
        rng = self.rng
        self._pid = rng.randrange(1000, 30000)
        self.pools: dict[str, _PidPool] = {}
        self.single_pid: dict[str, int] = {}
        self.inode_next = rng.randrange(0x10000, 0x40000)
        self.free_inodes: list[tuple[float, int]] = []  # heap of (freed_at, inode)
        self.live_ids: dict[str, float] = {}  # queue id -> removal time (prevents collisions)
        self.retired: deque[tuple[float, str]] = deque(maxlen=5000)
        self._retired_count = 0
        self.local_users = [
            f"{rng.choice(FIRST)}.{rng.choice(LAST)}@{rng.choice(LOCAL_DOMAINS)}"
            for _ in range(400)
        ]
        self.clients = [self._make_client() for _ in range(4000)]
        self.remotes = self._make_remotes()
        self.remote_rcpts = [self._make_remote_addr() for _ in range(3000)]
        self.senders = self.remote_rcpts[:1500] + [self._make_verp() for _ in range(1000)]

    # ---- identities ---------------------------------------------------------------------------
    def _new_pid(self) -> int:
        self._pid += self.rng.randrange(1, 40)
        if self._pid > 4194304:  # Linux pid_max default on 64-bit
            self._pid = 300
        return self._pid

    def pid(self, prog: str, start: float, end: float) -> int:
        pool = self.pools.get(prog)
        if pool is None:
            pool = self.pools[prog] = _PidPool(self._new_pid)
        return pool.take(start, end)

    def daemon_pid(self, prog: str) -> int:
        """qmgr, postscreen, anvil, scache, dnsblog: one long-lived process per instance."""
        pid = self.single_pid.get(prog)
        if pid is None:
            pid = self.single_pid[prog] = self._new_pid()
        return pid

    def _ip(self) -> str:
        r = self.rng.randrange
        first = r(1, 224)
        while first in (10, 127, 172, 192, 169, 100):  # keep clear of private/special ranges
            first = r(1, 224)
        return f"{first}.{r(0, 256)}.{r(0, 256)}.{r(1, 255)}"

    def _make_client(self) -> tuple[str, str]:
        rng = self.rng
        ip = self._ip()
        roll = rng.random()
        if roll < 0.3:
            name = "unknown"
        elif roll < 0.6:
            name = f"mail{rng.randrange(1, 40)}.{rng.choice(LAST)}-{rng.choice(('gmbh', 'corp', 'shop', 'net'))}.{rng.choice(('de', 'com', 'fr', 'nl', 'co.uk'))}"
        elif roll < 0.85:
            name = f"mail-{rng.choice(('ed1', 'wm1', 'oi1', 'pj1'))}-f{rng.randrange(100, 999)}.google.com"
        else:
            name = f"{ip.replace('.', '-')}.dyn.{rng.choice(('telekom', 'vodafone', 'orange', 'comcast'))}.net"
        return name, ip

    def _make_remote_addr(self) -> str:
        rng = self.rng
        rem = rng.choice(self.remotes)
        return f"{rng.choice(FIRST)}{rng.choice(('.', '_', ''))}{rng.choice(LAST)}{rng.randrange(0, 99) if rng.random() < 0.3 else ''}@{rem.domain}"

    def _make_verp(self) -> str:
        """Bulk mail return paths: per-recipient (VERP) bounce addresses, long on purpose."""
        rng = self.rng
        user = rng.choice(FIRST) + "." + rng.choice(LAST)
        token = "".join(rng.choices(SAFE_ALPHABET, k=rng.randrange(8, 20)))
        esp = f"{rng.choice(('news', 'mailer', 'bounce', 'mta'))}.{rng.choice(LAST)}-{rng.choice(('shop', 'media', 'travel', 'bank'))}.{rng.choice(('com', 'de', 'net'))}"
        return (
            f"bounce-{rng.randrange(1000, 999999)}-{token}-{user}={rng.choice(LOCAL_DOMAINS)}@{esp}"
        )

    def _message_id(self, name: str) -> str:
        rng = self.rng
        tok = "".join(rng.choices(SAFE_ALPHABET, k=rng.randrange(20, 44)))
        if name.endswith("google.com"):
            return f"CA+{tok}@mail.gmail.com"
        host = name if name != "unknown" else "localhost.localdomain"
        return f"{tok}.{rng.randrange(10**9, 10**10)}@{host}"

    def _make_remotes(self) -> list[_Remote]:
        """(dsn, reply) pairs; Postfix appends "(in reply to X command)" to remote replies."""
        ip = self._ip
        rcpt_cmd = " (in reply to RCPT TO command)"
        eod = " (in reply to end of DATA command)"
        gmail_511 = (
            "550-5.1.1 The email account that you tried to reach does not exist. Please try "
            "550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 "
            "unnecessary spaces. For more information, go to 550 5.1.1  "
            "https://support.google.com/mail/?p=NoSuchUser {q} - gsmtp" + rcpt_cmd
        )
        generic_ok = (("2.0.0", "250 2.0.0 Ok: queued as {q}"), ("2.0.0", "250 OK id={q}"))
        generic_511 = (
            (
                "5.1.1",
                "550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table"
                + rcpt_cmd,
            ),
            (
                "5.1.1",
                "550 5.1.1 <{r}>: Recipient address rejected: User unknown in local recipient table"
                + rcpt_cmd,
            ),
            ("5.2.2", "552 5.2.2 <{r}>: Recipient address rejected: Mailbox full" + rcpt_cmd),
        )
        grey = (
            (
                "4.2.0",
                "450 4.2.0 <{r}>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/{d}.html"
                + rcpt_cmd,
            ),
            ("4.7.1", "451 4.7.1 Please try again later" + rcpt_cmd),
        )
        outlook_ok = "250 2.6.0 <{m}> [InternalId={t}, Hostname=AM7EUR03HT{n}.eop-EUR03.prod.protection.outlook.com] {s} bytes in 0.{n}, 42.120 KB/sec Queued mail for delivery -> 250 2.1.5"
        outlook_550 = (
            "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [AM7EUR03FT{n}.eop-EUR03.prod.protection.outlook.com]"
            + rcpt_cmd
        )
        outlook_451 = (
            "451 4.7.500 Server busy. Please try again later from [{ip}]. (S77714) [AM7EUR03FT{n}.eop-EUR03.prod.protection.outlook.com]"
            + rcpt_cmd
        )
        out: list[_Remote] = [
            _Remote(
                domain="gmail.com",
                mx="gmail-smtp-in.l.google.com",
                ips=(ip(), ip()),
                ok=(("2.0.0", "250 2.0.0 OK  {t} {q} - gsmtp"),),
                unknown=(("5.1.1", gmail_511),),
                tempfail=(
                    (
                        "4.7.28",
                        "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail. 421 4.7.28 To protect our users, mail has been temporarily rate limited. {q} - gsmtp"
                        + eod,
                    ),
                ),
                tls="Trusted",
            ),
            _Remote(
                domain="outlook.com",
                mx="outlook-com.olc.protection.outlook.com",
                ips=(ip(), ip()),
                ok=(("2.6.0", outlook_ok),),
                unknown=(("5.5.0", outlook_550),),
                tempfail=(("4.7.500", outlook_451),),
                tls="Trusted",
            ),
            _Remote(
                domain="hotmail.com",
                mx="hotmail-com.olc.protection.outlook.com",
                ips=(ip(),),
                ok=(("2.6.0", outlook_ok),),
                unknown=(("5.5.0", outlook_550),),
                tempfail=(("4.7.500", outlook_451),),
                tls="Trusted",
            ),
            # Yahoo answers without enhanced status codes; Postfix then logs 5.0.0 / 4.0.0
            _Remote(
                domain="yahoo.com",
                mx="mta6.am0.yahoodns.net",
                ips=(ip(), ip(), ip()),
                ok=(("2.0.0", "250 ok dirdel"),),
                unknown=(
                    (
                        "5.0.0",
                        "554 delivery error: dd This user doesn't have a yahoo.com account ({r}) [0] - mta{n}.mail.gq1.yahoo.com"
                        + eod,
                    ),
                ),
                tempfail=(
                    (
                        "4.7.0",
                        "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes (in reply to MAIL FROM command)",
                    ),
                ),
                tls="Trusted",
            ),
            _Remote(
                domain="gmx.de",
                mx="mx00.emig.gmx.net",
                ips=(ip(), ip()),
                ok=(("2.0.0", "250 Requested mail action okay, completed: id={q}"),),
                unknown=(
                    ("5.0.0", "550 Requested action not taken: mailbox unavailable" + rcpt_cmd),
                ),
                tempfail=(
                    (
                        "4.0.0",
                        "421 gmx.net (mxgmx116) Nemesis ESMTP Service not available No SMTP service Bad DNS PTR resource record."
                        + eod,
                    ),
                ),
                tls="Verified",
            ),
        ]
        for i in range(60):
            name = f"{self.rng.choice(LAST)}-{self.rng.choice(('mail', 'group', 'shop', 'law', 'tech'))}.{self.rng.choice(('de', 'com', 'fr', 'nl', 'org', 'at'))}"
            out.append(
                _Remote(
                    domain=name,
                    mx=f"mx{self.rng.randrange(1, 3)}.{name}",
                    ips=(ip(),),
                    ok=generic_ok,
                    unknown=generic_511,
                    tempfail=grey,
                    tls=self.rng.choice(("Trusted", "Untrusted", "Untrusted", "")),
                    dead=i < 2,
                )
            )
        return out

    def queue_id(self, t: float, life_end: float, long_ids: bool) -> str:
        """A queue ID unused at time `t`; the inode is recycled after the message is removed."""
        rng = self.rng
        free = self.free_inodes
        if not long_ids and self.retired and rng.random() < self.cfg.reuse_share:
            freed_at, old = self.retired[0]
            if freed_at < t and self.live_ids.get(old, 0.0) < t:
                self.retired.popleft()
                self.live_ids[old] = life_end
                return old
        while True:
            if free and free[0][0] < t and rng.random() < 0.9:
                inode = heapq.heappop(free)[1]
            else:
                self.inode_next += rng.randrange(1, 9)
                inode = self.inode_next
            sec = int(t)
            usec = int((t - sec) * 1_000_000)
            if long_ids:
                qid = (
                    _safe_encode(sec, 52, 6)
                    + _safe_encode(usec, 52, 4)
                    + "z"
                    + _safe_encode(inode, 51, 0)
                )
            else:
                qid = f"{usec:05X}{inode:X}"
            if self.live_ids.get(qid, 0.0) < t:
                self.live_ids[qid] = life_end
                return qid
            t += 0.000001

    def retire(self, qid: str, t: float, long_ids: bool) -> None:
        self.live_ids[qid] = t
        if long_ids:
            inode_txt = qid.rsplit("z", 1)[1]
            inode = 0
            for ch in inode_txt:
                inode = inode * 51 + SAFE_ALPHABET.index(ch)
        else:
            inode = int(qid[5:], 16)
            self._retired_count += 1
            if self._retired_count % 16 == 0:  # a sample is enough to draw reused IDs from
                self.retired.append((t + self.cfg.reuse_after, qid))
        heapq.heappush(self.free_inodes, (t, inode))

    def prune(self, now: float) -> None:
        self.live_ids = {k: v for k, v in self.live_ids.items() if v >= now}

    # ---- output -------------------------------------------------------------------------------
    def emit(self, t: float, tag: str, body: str, hook: Any = None) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), f"{tag}: {body}", hook))

    def row(self, msg: _Msg | None, qid: str, rcpt: str, orig_to: str | None) -> list[Any]:
        r: list[Any] = [
            msg.qid if msg else qid,
            rcpt,
            orig_to,
            None,
            None,
            None,
            self.messages,
            msg.inst if msg else "postfix",
        ]
        if self.want_truth:
            self.truth.append(r)
        return r

    # ---- message life -------------------------------------------------------------------------
    def new_message(self, t: float, inst: str, sender: str, size: int, long_ids: bool) -> _Msg:
        self.messages += 1
        # the ID is reserved for a generous horizon now and released by retire()
        qid = self.queue_id(t, t + self.cfg.queue_lifetime * 2 + 86400.0, long_ids)
        return _Msg(qid=qid, inst=inst, arrival=t, sender=sender, size=size)

    def deliver_all(
        self,
        msg: _Msg,
        t: float,
        rcpts: list[tuple[str, str | None]],
        route: Callable[[str], str],
        long_ids: bool,
    ) -> float:
        """qmgr activation, one delivery per recipient (with retries), notifications, removal.
        Returns the removal time."""
        rng = self.rng
        cfg = self.cfg
        inst = msg.inst
        qid = msg.qid
        qmgr = f"{inst}/qmgr[{self.daemon_pid(inst + '/qmgr')}]"
        nrcpt = len(rcpts)
        active_line = f"{qid}: from=<{msg.sender}>, size={msg.size}, nrcpt={nrcpt} (queue active)"
        self.emit(t, qmgr, active_line)
        pending = [
            (rcpt, orig, self.row(msg, qid, rcpt, orig), route(rcpt)) for rcpt, orig in rcpts
        ]
        attempt_t = t
        backoff = cfg.min_backoff
        end = t
        warned = False
        notify_success = rng.random() < 0.01
        attempt = 0
        while True:
            still: list[tuple[str, str | None, list[Any], str]] = []
            expired = attempt_t - msg.arrival > cfg.queue_lifetime
            bounced = sent = False
            for rcpt, orig, row, kind in pending:
                done_t, status = self.deliver_one(msg, attempt_t, rcpt, orig, row, kind, attempt)
                end = max(end, done_t)
                if status == "deferred":
                    still.append((rcpt, orig, row, kind))
                bounced = bounced or status == "bounced"
                sent = sent or status == "sent"
            # bounce(8) sends one notice per message and queue run, never to the null sender
            if msg.sender and (bounced or (sent and notify_success)):
                end += rng.uniform(0.005, 0.05)
                what = "non-delivery" if bounced else "delivery status"
                self.notify(msg, end, f"sender {what} notification", long_ids)
            pending = still
            if not pending:
                break
            if expired:
                et = end + rng.uniform(0.001, 0.01)
                hook = [(p[2], "expired", None) for p in pending]
                self.emit(
                    et,
                    qmgr,
                    f"{qid}: from=<{msg.sender}>, status=expired, returned to sender",
                    hook,
                )
                end = et + rng.uniform(0.005, 0.05)
                if msg.sender:
                    self.notify(msg, end, "sender non-delivery notification", long_ids)
                break
            if not warned and attempt_t - msg.arrival > cfg.delay_warning and msg.sender:
                warned = True
                self.notify(
                    msg, end + rng.uniform(0.01, 0.05), "sender delay notification", long_ids
                )
            # queue_run_delay granularity: the retry is picked up by the next queue scan
            attempt_t = end + backoff + rng.uniform(0, cfg.queue_run_delay)
            backoff = min(backoff * 2, cfg.max_backoff)
            attempt += 1
            self.emit(attempt_t, qmgr, active_line)
        removed = end + rng.uniform(0.0005, 0.02)
        self.emit(removed, qmgr, f"{qid}: removed")
        self.retire(qid, removed, long_ids)
        return removed

    def deliver_one(
        self,
        msg: _Msg,
        t: float,
        rcpt: str,
        orig: str | None,
        row: list[Any],
        kind: str,
        attempt: int,
    ) -> tuple[float, str]:
        """One delivery attempt. Returns (time of the delivery line, status)."""
        rng = self.rng
        u = rng.random
        inst = msg.inst
        b = u() * 0.05 if u() < 0.9 else u() * 3
        start = t + b
        relay: str
        if kind == "smtp":
            return self.deliver_smtp(msg, t, b, rcpt, orig, row, attempt)
        if kind == "lmtp":
            c, d = u() * 0.01, 0.01 + u() * 0.2
            relay = f"{MY_NAME}[private/dovecot-lmtp]"
            if u() < 0.01:
                dsn, status = "5.2.2", "bounced"
                text = f"host {MY_NAME}[private/dovecot-lmtp] said: 552 5.2.2 <{rcpt}> Quota exceeded (mailbox for user is full) (in reply to end of DATA command)"
            else:
                dsn, status = "2.0.0", "sent"
                text = f"250 2.0.0 <{rcpt}> {''.join(rng.choices(SAFE_ALPHABET, k=22))} Saved"
        elif kind == "virtual":
            c, d = 0.0, u() * 0.05
            relay, dsn, status, text = "virtual", "2.0.0", "sent", "delivered to maildir"
        elif kind == "pipe":
            c, d = 0.0, 0.02 + u() * 0.3
            relay, dsn, status, text = "dovecot", "2.0.0", "sent", "delivered via dovecot service"
        elif kind == "local":
            c, d = 0.0, u() * 0.05
            relay = "local"
            if u() < 0.05:
                dsn, status = "5.1.1", "bounced"
                text = f'unknown user: "{rcpt.split("@")[0]}"'
            else:
                dsn, status = "2.0.0", "sent"
                text = rng.choice(
                    ("delivered to mailbox", 'delivered to command: procmail -a "$EXTENSION"')
                )
        else:  # "error": transport error:, e.g. a domain the admin blocked in transport(5)
            c, d = 0.0, 0.0
            relay, dsn, status = "none", "5.0.0", "bounced"
            text = "mail for this domain is not accepted here"
        done = start + c + d
        tag = f"{inst}/{kind}[{self.pid(inst + '/' + kind, t, done)}]"
        orig_txt = f", orig_to=<{orig}>" if orig else ""
        self.emit(
            done,
            tag,
            f"{msg.qid}: to=<{rcpt}>{orig_txt}, relay={relay}, delay={_fmt_delay(done - msg.arrival)}, "
            f"delays={_fmt_delay(t - msg.arrival)}/{_fmt_delay(b)}/{_fmt_delay(c)}/{_fmt_delay(d)}, "
            f"dsn={dsn}, status={status} ({text})",
            (row, status, dsn, relay),
        )
        return done, status

    def deliver_smtp(
        self,
        msg: _Msg,
        t: float,
        b: float,
        rcpt: str,
        orig: str | None,
        row: list[Any],
        attempt: int,
    ) -> tuple[float, str]:
        rng = self.rng
        u = rng.random
        inst = msg.inst
        start = t + b
        domain = rcpt.rsplit("@", 1)[1]
        rem = self._remote_for(domain)
        mx_ip = rng.choice(rem.ips)
        mxn = f"{rem.mx}[{mx_ip}]"
        roll = u()
        # the first attempt fails more often than retries (greylisting passes on retry)
        fail_scale = 1.0 if attempt == 0 else 0.6
        c = 0.05 + u() * 0.4
        d = 0.05 + u() * 1.5
        lines: list[tuple[float, str]] = []
        conn_use = ""
        relay = mxn + ":25"
        if rem.dead:
            roll = u() * 0.02 * fail_scale  # timed out or refused, every time
        if roll < 0.012 * fail_scale:
            c, d = 30.0 + u() * 0.2, 0.0  # smtp_connect_timeout=30s
            lines.append((start + c * 0.99, f"connect to {mxn}:25: Connection timed out"))
            relay, dsn, status = "none", "4.4.1", "deferred"
            text = f"connect to {mxn}:25: Connection timed out"
        elif roll < 0.02 * fail_scale:
            c, d = u() * 0.2, 0.0
            relay, dsn, status = "none", "4.4.1", "deferred"
            text = f"connect to {mxn}:25: Connection refused"
        elif roll < 0.026 * fail_scale:
            c, d = u() * 0.1, 0.0
            relay, dsn, status = "none", "4.4.3", "deferred"
            text = f"Host or domain name not found. Name service error for name={domain} type=MX: Host not found, try again"
        elif roll < 0.05 * fail_scale:
            dsn, tpl = rng.choice(rem.tempfail)
            status = "deferred"
            text = f"host {mxn} said: {self._fill(tpl, rcpt, domain, msg)}"
        elif roll < 0.075:
            dsn, tpl = rng.choice(rem.unknown)
            status = "bounced"
            text = f"host {mxn} said: {self._fill(tpl, rcpt, domain, msg)}"
        elif roll < 0.0765:
            c, d = u() * 0.1, 0.0
            relay, dsn, status = "none", "5.4.4", "bounced"
            text = f"Host or domain name not found. Name service error for name={domain} type=A: Host not found"
        else:
            dsn, tpl = rng.choice(rem.ok)
            status = "sent"
            text = self._fill(tpl, rcpt, domain, msg)
        if relay != "none":
            if u() < 0.25:
                conn_use = f", conn_use={rng.randrange(2, 12)}"  # smtp_connection_cache reuse
                c = 0.0
            elif rem.tls:
                lines.append(
                    (
                        start + c * 0.9,
                        f"{rem.tls} TLS connection established to {mxn}:25: {TLS13 if u() < 0.8 else TLS12}",
                    )
                )
        done = start + c + d
        tag = f"{inst}/smtp[{self.pid(inst + '/smtp', t, done)}]"
        for lt, body in lines:
            self.emit(lt, tag, body)
        orig_txt = f", orig_to=<{orig}>" if orig else ""
        self.emit(
            done,
            tag,
            f"{msg.qid}: to=<{rcpt}>{orig_txt}, relay={relay}{conn_use}, "
            f"delay={_fmt_delay(done - msg.arrival)}, delays={_fmt_delay(t - msg.arrival)}/"
            f"{_fmt_delay(b)}/{_fmt_delay(c)}/{_fmt_delay(d)}, dsn={dsn}, status={status} ({text})",
            (row, status, dsn, relay),
        )
        return done, status

    def _remote_for(self, domain: str) -> _Remote:
        for rem in self.remotes:
            if rem.domain == domain:
                return rem
        return self.remotes[-1]

    def _fill(self, tpl: str, rcpt: str, domain: str, msg: _Msg) -> str:
        rng = self.rng
        return (
            tpl.replace("{r}", rcpt)
            .replace("{d}", domain)
            .replace("{q}", "".join(rng.choices(SAFE_ALPHABET, k=12)))
            .replace("{t}", str(int(msg.arrival) + rng.randrange(1, 9)))
            .replace("{n}", str(rng.randrange(100, 999)))
            .replace("{s}", str(msg.size + 800))
            .replace("{m}", f"{msg.qid}@{MY_NAME}")
            .replace("{ip}", MY_IP)
        )

    def notify(self, msg: _Msg, t: float, what: str, long_ids: bool) -> None:
        """bounce(8): `QID: sender ... notification: NEWID`, then the new message's own life."""
        rng = self.rng
        inst = msg.inst
        size = 2000 + rng.randrange(0, 4000) + (msg.size if "non-delivery" in what else 0) // 4
        new = self.new_message(t, inst, "", size, long_ids)
        tag = f"{inst}/bounce[{self.pid(inst + '/bounce', t, t + 0.02)}]"
        self.emit(t, tag, f"{msg.qid}: {what}: {new.qid}")
        ct = t + rng.uniform(0.0005, 0.005)
        ctag = f"{inst}/cleanup[{self.pid(inst + '/cleanup', ct, ct + 0.01)}]"
        stamp = datetime.fromtimestamp(int(t), UTC).strftime("%Y%m%d%H%M%S")
        self.emit(ct, ctag, f"{new.qid}: message-id=<{stamp}.{new.qid}@{MY_NAME}>")
        sender = msg.sender
        kind = "lmtp" if sender.split("@")[-1] in LOCAL_DOMAINS else "smtp"
        if "@" not in sender:
            kind = "local"
            sender = f"{sender}@{MY_NAME}"
        self.deliver_all(
            new, ct + rng.uniform(0.001, 0.01), [(sender, None)], lambda _r: kind, long_ids
        )

    # ---- sessions -----------------------------------------------------------------------------
    def session(self, t: float) -> None:
        roll = self.rng.random()
        if roll < 0.45:
            self.inbound(t)
        elif roll < 0.53:
            self.postscreen_reject(t)
        elif roll < 0.55:
            self.pregreet(t)
        elif roll < 0.80:
            self.submission(t)
        elif roll < 0.86:
            self.smtpd_reject(t)
        elif roll < 0.90:
            self.sasl_failure(t)
        elif roll < 0.94:
            self.lost_connection(t)
        else:
            self.pickup(t)

    def _ps_connect(self, t: float) -> tuple[str, str, int, str, float]:
        rng = self.rng
        name, ip = rng.choice(self.clients)
        port = rng.randrange(1024, 65536)
        ps = f"postfix/postscreen[{self.daemon_pid('postfix/postscreen')}]"
        self.emit(t, ps, f"CONNECT from [{ip}]:{port} to [{MY_IP}]:25")
        return name, ip, port, ps, t

    def postscreen_reject(self, t: float) -> None:
        rng = self.rng
        _name, ip, port, ps, t = self._ps_connect(t)
        dnsblog = f"postfix/dnsblog[{self.daemon_pid('postfix/dnsblog')}]"
        lists = rng.sample(DNSBLS, rng.randrange(1, 3))
        rank = 0
        for dl in lists:
            t += rng.uniform(0.01, 0.3)
            self.emit(
                t,
                dnsblog,
                f"addr {ip} listed by domain {dl} as 127.0.0.{rng.choice((2, 3, 4, 9, 10, 11))}",
            )
            rank += 3 if dl.startswith("zen") else 2
        t += rng.uniform(0.2, 6.0)  # postscreen_dnsbl_timeout/greet_wait window
        self.emit(t, ps, f"DNSBL rank {rank} for [{ip}]:{port}")
        sender = rng.choice(self.remote_rcpts) if rng.random() < 0.8 else ""
        rcpt = rng.choice(self.local_users)
        helo = rng.choice(HELO_JUNK) if rng.random() < 0.5 else f"{ip.replace('.', '-')}.example"
        t += rng.uniform(0.5, 3.0)
        self.emit(
            t,
            ps,
            f"NOQUEUE: reject: RCPT from [{ip}]:{port}: 550 5.7.1 Service unavailable; client [{ip}] blocked using {lists[0]}; from=<{sender}>, to=<{rcpt}>, proto=ESMTP, helo=<{helo}>",
            (self.row(None, "NOQUEUE", rcpt, None), "rejected", "5.7.1", "none"),
        )
        t += rng.uniform(0.05, 1.0)
        self.emit(t, ps, f"DISCONNECT [{ip}]:{port}")

    def pregreet(self, t: float) -> None:
        rng = self.rng
        _name, ip, port, ps, t = self._ps_connect(t)
        t += rng.uniform(0.01, 1.0)
        helo = rng.choice(HELO_JUNK)
        cmd = f"EHLO {helo}"
        if rng.random() < 0.7:
            self.emit(
                t,
                ps,
                f"PREGREET {len(cmd) + 2} after {_fmt_delay(rng.uniform(0.01, 2))} from [{ip}]:{port}: {cmd}\\r\\n",
            )
            t += rng.uniform(0.01, 2.0)
        else:
            t += rng.uniform(0.5, 5.0)
            self.emit(
                t,
                ps,
                f"HANGUP after {_fmt_delay(rng.uniform(0.5, 5.0))} from [{ip}]:{port} in tests before SMTP handshake",
            )
        self.emit(t + rng.uniform(0.001, 0.01), ps, f"DISCONNECT [{ip}]:{port}")

    def _smtpd_open(
        self, t: float, end: float, syslog: str, name: str, ip: str, tls: bool
    ) -> tuple[str, float]:
        rng = self.rng
        tag = f"{syslog}/smtpd[{self.pid(syslog + '/smtpd', t, end)}]"
        self.emit(t, tag, f"connect from {name}[{ip}]")
        if tls:
            t += rng.uniform(0.02, 0.3)
            self.emit(
                t,
                tag,
                f"Anonymous TLS connection established from {name}[{ip}]: {TLS13 if rng.random() < 0.7 else TLS12}",
            )
        return tag, t

    def inbound(self, t: float) -> None:
        """Port 25 mail that passes postscreen and is accepted for local recipients."""
        rng = self.rng
        u = rng.random
        name, ip, port, ps, t = self._ps_connect(t)
        t += rng.uniform(0.001, 0.01)
        if u() < 0.9:
            self.emit(t, ps, f"PASS OLD [{ip}]:{port}")
        else:
            t += rng.uniform(6.0, 6.5)  # postscreen_greet_wait
            self.emit(t, ps, f"PASS NEW [{ip}]:{port}")
        t += rng.uniform(0.0005, 0.005)
        tls = u() < 0.7
        sess_end = t + 60.0
        tag, t = self._smtpd_open(t, sess_end, "postfix", name, ip, tls)
        helo = name if name != "unknown" else f"[{ip}]"
        sender = rng.choice(self.senders) if u() < 0.93 else ""
        nr = 1 if u() < 0.6 else rng.randrange(2, 7)
        rcpts = rng.sample(self.local_users, nr)
        long_ids = u() < self.cfg.long_id_share
        msg: _Msg | None = None
        accepted: list[str] = []
        rejected = 0
        for rcpt in rcpts:
            t += rng.uniform(0.01, 0.3)
            if u() < 0.08:
                rejected += 1
                code = "550 5.1.1" if u() < 0.8 else "450 4.2.0"
                why = (
                    "Recipient address rejected: User unknown in virtual mailbox table"
                    if code.startswith("550")
                    else "Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html"
                )
                qtxt = msg.qid if msg else "NOQUEUE"
                self.emit(
                    t,
                    tag,
                    f"{qtxt}: reject: RCPT from {name}[{ip}]: {code} <{rcpt}>: {why}; from=<{sender}> to=<{rcpt}> proto=ESMTP helo=<{helo}>",
                    (self.row(None, qtxt, rcpt, None), "rejected", code.split(" ")[1], "none"),
                )
                continue
            if msg is None:
                size = int(rng.lognormvariate(9.5, 1.2)) + 600
                msg = self.new_message(t, "postfix", sender, size, long_ids)
                self.emit(t, tag, f"{msg.qid}: client={name}[{ip}]")
            accepted.append(rcpt)
        cmds = 3 + (2 if tls else 0)
        ehlo = "ehlo=2 starttls=1" if tls else "ehlo=1"
        rc = f"rcpt={len(accepted)}/{nr}" if rejected else f"rcpt={nr}"
        if msg is None:
            t += rng.uniform(0.01, 0.3)
            total = cmds - 1 + nr
            self.emit(
                t,
                tag,
                f"disconnect from {name}[{ip}] {ehlo} mail=1 {rc} quit=1 commands={total - rejected}/{total}",
            )
            return
        t += rng.uniform(0.05, 2.0)
        ct = t
        ctag = f"postfix/cleanup[{self.pid('postfix/cleanup', ct, ct + 0.05)}]"
        mid = self._message_id(name)
        self.emit(ct, ctag, f"{msg.qid}: message-id=<{mid}>")
        verdict = u()
        total = cmds + nr
        data = "data=1"
        if verdict < 0.03:
            t += rng.uniform(0.2, 3.0)
            act = self._content_reject(t, ctag, msg, name, ip, helo, accepted, sender)
            if act == "reject":
                data = "data=0/1"
                total_ok = total - rejected - 1
                self.emit(
                    t + 0.01,
                    tag,
                    f"disconnect from {name}[{ip}] {ehlo} mail=1 {rc} {data} quit=1 commands={total_ok}/{total}",
                )
                self.retire(msg.qid, t, long_ids)
                return
            if act in ("discard", "hold"):
                self.emit(
                    t + 0.01,
                    tag,
                    f"disconnect from {name}[{ip}] {ehlo} mail=1 {rc} data=1 quit=1 commands={total - rejected}/{total}"
                    if rejected
                    else f"disconnect from {name}[{ip}] {ehlo} mail=1 {rc} data=1 quit=1 commands={total}",
                )
                if act == "discard":
                    self.retire(msg.qid, t, long_ids)
                return
        qt = t + rng.uniform(0.001, 0.05)
        cmdtxt = f"commands={total - rejected}/{total}" if rejected else f"commands={total}"
        self.emit(
            t + rng.uniform(0.005, 0.1),
            tag,
            f"disconnect from {name}[{ip}] {ehlo} mail=1 {rc} data=1 quit=1 {cmdtxt}",
        )
        if u() < 0.35:
            self.content_filter(msg, qt, accepted, name, ip, mid, long_ids)
        else:
            kind = rng.choice(("lmtp", "lmtp", "virtual", "pipe"))
            self.deliver_all(msg, qt, [(r, None) for r in accepted], lambda _r: kind, long_ids)

    def _content_reject(
        self,
        t: float,
        ctag: str,
        msg: _Msg,
        name: str,
        ip: str,
        helo: str,
        rcpts: list[str],
        sender: str,
    ) -> str:
        """cleanup(8) header_checks / milter verdicts (header_checks(5) actions)."""
        rng = self.rng
        roll = rng.random()
        ctx = f"from {name}[{ip}]; from=<{sender}> to=<{rcpts[0]}> proto=ESMTP helo=<{helo}>"
        if roll < 0.5:
            act, dsn, status = "reject", "5.7.1", "rejected"
            body = f"{msg.qid}: milter-reject: END-OF-MESSAGE from {name}[{ip}]: 5.7.1 Spam message rejected; from=<{sender}> to=<{rcpts[0]}> proto=ESMTP helo=<{helo}>"
        elif roll < 0.75:
            act, dsn, status = "reject", "5.7.1", "rejected"
            subj = rng.choice(
                ("Your account is suspended", "Invoice overdue", "=?UTF-8?B?V2lubmVy?=")
            )
            body = (
                f"{msg.qid}: reject: header Subject: {subj} {ctx}: 5.7.1 Message content rejected"
            )
        elif roll < 0.9:
            act, dsn, status = "discard", "", "discarded"
            body = f"{msg.qid}: discard: header X-Spam-Flag: YES {ctx}: spam"
        else:
            act, dsn, status = "hold", "", "held"
            body = f"{msg.qid}: hold: header X-Spam-Level: ********** {ctx}: review"
        hook = [(self.row(msg, msg.qid, r, None), status, dsn or None) for r in rcpts]
        self.emit(t, ctag, body, hook)
        return act

    def content_filter(
        self,
        msg: _Msg,
        qt: float,
        rcpts: list[str],
        name: str,
        ip: str,
        mid: str,
        long_ids: bool,
    ) -> None:
        """amavis on 127.0.0.1:10024, re-injected through smtpd on 127.0.0.1:10025."""
        rng = self.rng
        qmgr = f"postfix/qmgr[{self.daemon_pid('postfix/qmgr')}]"
        self.emit(
            qt,
            qmgr,
            f"{msg.qid}: from=<{msg.sender}>, size={msg.size}, nrcpt={len(rcpts)} (queue active)",
        )
        start = qt + rng.uniform(0.001, 0.05)
        rt = start + rng.uniform(0.5, 4.0)  # amavis scan time
        stag, _ = self._smtpd_open(rt, rt + 0.1, "postfix", "localhost", "127.0.0.1", False)
        new = self.new_message(rt + 0.002, "postfix", msg.sender, msg.size + 1500, long_ids)
        self.emit(
            rt + 0.002,
            stag,
            f"{new.qid}: client=localhost[127.0.0.1], orig_queue_id={msg.qid}, orig_client={name}[{ip}]",
        )
        ct = rt + 0.01
        ctag = f"postfix/cleanup[{self.pid('postfix/cleanup', ct, ct + 0.01)}]"
        self.emit(ct, ctag, f"{new.qid}: message-id=<{mid}>")  # amavis keeps the Message-ID
        nr = len(rcpts)
        self.emit(
            ct + 0.01,
            stag,
            f"disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt={nr} data=1 quit=1 commands={4 + nr}",
        )
        done = ct + 0.012
        tag = f"postfix/smtp[{self.pid('postfix/smtp', start, done)}]"
        for rcpt in rcpts:
            row = self.row(msg, msg.qid, rcpt, None)
            relay = "127.0.0.1[127.0.0.1]:10024"
            self.emit(
                done,
                tag,
                f"{msg.qid}: to=<{rcpt}>, relay={relay}, delay={_fmt_delay(done - msg.arrival)}, "
                f"delays={_fmt_delay(qt - msg.arrival)}/{_fmt_delay(start - qt)}/0/{_fmt_delay(done - start)}, "
                f"dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as {new.qid})",
                (row, "sent", "2.0.0", relay),
            )
        removed = done + rng.uniform(0.0005, 0.01)
        self.emit(removed, qmgr, f"{msg.qid}: removed")
        self.retire(msg.qid, removed, long_ids)
        kind = rng.choice(("lmtp", "virtual"))
        self.deliver_all(new, ct + 0.02, [(r, None) for r in rcpts], lambda _r: kind, long_ids)

    def submission(self, t: float) -> None:
        """Port 587 with SASL; mostly remote recipients; a few percent via `postfix-out`."""
        rng = self.rng
        u = rng.random
        inst = "postfix-out" if u() < 0.04 else "postfix"
        long_ids = inst == "postfix-out" or u() < self.cfg.long_id_share
        name, ip = rng.choice(self.clients)
        user = rng.choice(self.local_users)
        syslog = f"{inst}/submission"
        tag, t = self._smtpd_open(t, t + 30.0, syslog, name, ip, True)
        t += rng.uniform(0.05, 0.3)
        size = int(rng.lognormvariate(9.8, 1.3)) + 500
        msg = self.new_message(t, inst, user, size, long_ids)
        method = "PLAIN" if u() < 0.8 else "LOGIN"
        self.emit(
            t, tag, f"{msg.qid}: client={name}[{ip}], sasl_method={method}, sasl_username={user}"
        )
        nr = 1 if u() < 0.5 else rng.randrange(2, 9)
        rcpts: list[tuple[str, str | None]] = []
        for _ in range(nr):
            if u() < 0.15:
                rcpts.append((rng.choice(self.local_users), None))
            else:
                rcpts.append((rng.choice(self.remote_rcpts), None))
        rcpts = list(dict.fromkeys(rcpts))
        nr = len(rcpts)
        t += rng.uniform(0.05, 1.5)
        ct = t
        ctag = f"{inst}/cleanup[{self.pid(inst + '/cleanup', ct, ct + 0.05)}]"
        stamp = datetime.fromtimestamp(int(t), UTC).strftime("%Y%m%d%H%M%S")
        self.emit(
            ct,
            ctag,
            f"{msg.qid}: message-id=<{stamp}.{''.join(rng.choices(SAFE_ALPHABET, k=10))}@{user.split('@')[1]}>",
        )
        total = 5 + 2 + nr
        if u() < 0.01:
            # smtpd_end_of_data_restrictions (e.g. a sending-quota policy), queue file exists
            t += 0.02
            hook = [
                (self.row(msg, msg.qid, r, None), "rejected", "5.7.1", "none") for r, _ in rcpts
            ]
            self.emit(
                t,
                tag,
                f"{msg.qid}: reject: END-OF-MESSAGE from {name}[{ip}]: 554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: Sending quota exceeded; from=<{user}> to=<{rcpts[0][0]}> proto=ESMTP helo=<{name}>",
                hook,
            )
            self.emit(
                t + 0.01,
                tag,
                f"disconnect from {name}[{ip}] ehlo=2 starttls=1 auth=1 mail=1 rcpt={nr} data=0/1 quit=1 commands={total - 1}/{total}",
            )
            self.retire(msg.qid, t, long_ids)
            return
        self.emit(
            t + rng.uniform(0.005, 0.1),
            tag,
            f"disconnect from {name}[{ip}] ehlo=2 starttls=1 auth=1 mail=1 rcpt={nr} data=1 quit=1 commands={total}",
        )
        local = set(LOCAL_DOMAINS)
        blocked = "blocked-domain.example"

        def route(r: str) -> str:
            dom = r.rsplit("@", 1)[1]
            if dom in local:
                return "lmtp"
            return "error" if dom == blocked else "smtp"

        if u() < 0.003:
            rcpts[0] = (f"someone@{blocked}", None)
        self.deliver_all(msg, t + rng.uniform(0.001, 0.05), rcpts, route, long_ids)

    def pickup(self, t: float) -> None:
        """Local submission (cron, web apps) through pickup(8), with aliases (orig_to=)."""
        rng = self.rng
        uid, who = rng.choice(((0, "root"), (33, "www-data"), (1000, "deploy"), (104, "backup")))
        long_ids = rng.random() < self.cfg.long_id_share
        msg = self.new_message(
            t, "postfix", f"{who}@{MY_NAME}", rng.randrange(700, 40000), long_ids
        )
        self.emit(
            t,
            f"postfix/pickup[{self.daemon_pid('postfix/pickup')}]",
            f"{msg.qid}: uid={uid} from=<{who}>",
        )
        ct = t + rng.uniform(0.001, 0.01)
        ctag = f"postfix/cleanup[{self.pid('postfix/cleanup', ct, ct + 0.01)}]"
        stamp = datetime.fromtimestamp(int(t), UTC).strftime("%Y%m%d%H%M%S")
        self.emit(ct, ctag, f"{msg.qid}: message-id=<{stamp}.{msg.qid}@{MY_NAME}>")
        if rng.random() < 0.6:
            # alias expansion: root -> a human; orig_to keeps the alias (local(8))
            rcpts: list[tuple[str, str | None]] = [
                (rng.choice(self.local_users), rng.choice(("root", "postmaster", "cron")))
            ]
            kind = "lmtp"
        else:
            rcpts = [(f"{who}@{MY_NAME}", who)]
            kind = "local"
        self.deliver_all(msg, ct + rng.uniform(0.001, 0.05), rcpts, lambda _r: kind, long_ids)

    def smtpd_reject(self, t: float) -> None:
        """NOQUEUE rejects at CONNECT, MAIL, RCPT and DATA stages (smtpd_*_restrictions)."""
        rng = self.rng
        u = rng.random
        name, ip = rng.choice(self.clients)
        tag, t = self._smtpd_open(t, t + 20.0, "postfix", name, ip, False)
        helo = name if name != "unknown" else rng.choice(HELO_JUNK)
        client = f"{name}[{ip}]"
        sender = rng.choice(self.remote_rcpts) if u() < 0.9 else ""
        t += rng.uniform(0.05, 1.0)
        roll = u()
        if roll < 0.08:
            self.emit(
                t,
                tag,
                f"NOQUEUE: reject: CONNECT from {client}: 554 5.7.1 <{client}>: Client host rejected: Access denied; proto=SMTP",
            )
            self.emit(t + 0.001, tag, f"disconnect from {client} commands=0/0")
            return
        if roll < 0.2:
            self.emit(
                t,
                tag,
                f"NOQUEUE: reject: MAIL from {client}: 450 4.1.8 <{sender}>: Sender address rejected: Domain not found; from=<{sender}> proto=ESMTP helo=<{helo}>",
            )
            self.emit(t + 0.3, tag, f"disconnect from {client} ehlo=1 mail=0/1 quit=1 commands=2/3")
            return
        if roll < 0.3:
            self.emit(
                t,
                tag,
                f"NOQUEUE: reject: DATA from {client}: 550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce; from=<> proto=ESMTP helo=<{helo}>",
            )
            self.emit(
                t + 0.1,
                tag,
                f"disconnect from {client} ehlo=1 mail=1 rcpt=2 data=0/1 quit=1 commands=5/6",
            )
            return
        rcpt = rng.choice(self.remote_rcpts) if roll < 0.55 else rng.choice(self.local_users)
        if roll < 0.55:
            reply = f"454 4.7.1 <{rcpt}>: Relay access denied"
        elif roll < 0.75:
            reply = f"554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/{ip}"
        elif roll < 0.9:
            reply = f"450 4.7.1 Client host rejected: cannot find your hostname, [{ip}]"
        else:
            reply = f"504 5.5.2 <{helo}>: Helo command rejected: need fully-qualified hostname"
        dsn = reply.split(" ", 2)[1]
        self.emit(
            t,
            tag,
            f"NOQUEUE: reject: RCPT from {client}: {reply}; from=<{sender}> to=<{rcpt}> proto=ESMTP helo=<{helo}>",
            (self.row(None, "NOQUEUE", rcpt, None), "rejected", dsn, "none"),
        )
        if u() < 0.5:
            self.emit(
                t + rng.uniform(0.1, 2),
                tag,
                f"disconnect from {client} ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4",
            )
        else:
            self.emit(t + rng.uniform(0.1, 2), tag, f"lost connection after RCPT from {client}")
            self.emit(
                t + rng.uniform(2, 2.001),
                tag,
                f"disconnect from {client} ehlo=1 mail=1 rcpt=0/1 commands=2/3",
            )

    def sasl_failure(self, t: float) -> None:
        rng = self.rng
        ip = self._ip()
        tag, t = self._smtpd_open(
            t, t + 10.0, "postfix/submission", "unknown", ip, rng.random() < 0.5
        )
        method = rng.choice(("LOGIN", "PLAIN"))
        reason = "UGFzc3dvcmQ6" if method == "LOGIN" else "authentication failure"
        t += rng.uniform(0.5, 3)
        self.emit(t, tag, f"warning: unknown[{ip}]: SASL {method} authentication failed: {reason}")
        self.emit(t + rng.uniform(0.01, 0.5), tag, f"lost connection after AUTH from unknown[{ip}]")
        self.emit(
            t + rng.uniform(0.5, 0.51),
            tag,
            f"disconnect from unknown[{ip}] ehlo=1 auth=0/1 commands=1/2",
        )

    def lost_connection(self, t: float) -> None:
        rng = self.rng
        name, ip = rng.choice(self.clients)
        tag, t = self._smtpd_open(t, t + 400.0, "postfix", name, ip, False)
        roll = rng.random()
        if roll < 0.4:
            where, counts = "CONNECT", "commands=0/0"
        elif roll < 0.7:
            where, counts = "EHLO", "ehlo=1 commands=1"
        elif roll < 0.85:
            where, counts = "STARTTLS", "ehlo=1 starttls=0/1 commands=1/2"
        else:
            where, counts = (
                f"DATA ({rng.randrange(0, 90000)} bytes)",
                "ehlo=1 mail=1 rcpt=1 data=0/1 commands=3/4",
            )
        if rng.random() < 0.2:
            t += 300.0  # smtpd_timeout
            self.emit(t, tag, f"timeout after {where} from {name}[{ip}]")
        else:
            t += rng.uniform(0.1, 5)
            self.emit(t, tag, f"lost connection after {where} from {name}[{ip}]")
        if rng.random() < 0.1 and name != "unknown":
            self.emit(
                t - 0.05,
                tag,
                f"warning: hostname {name} does not resolve to address {ip}: Name or service not known",
            )
        if rng.random() < 0.05:
            self.emit(t - 0.02, tag, f"warning: non-SMTP command from {name}[{ip}]: GET / HTTP/1.1")
        self.emit(t + 0.0005, tag, f"disconnect from {name}[{ip}] {counts}")

    def noise(self, t: float) -> None:
        """anvil(8)/scache(8) statistics every anvil_status_update_time, plus odd warnings."""
        rng = self.rng
        stamp = datetime.fromtimestamp(int(t - rng.uniform(1, 500)), UTC)
        at = f"{MONTHS[stamp.month - 1]} {stamp.day:2d} {stamp:%H:%M:%S}"
        anvil = f"postfix/anvil[{self.daemon_pid('postfix/anvil')}]"
        _n, ip = rng.choice(self.clients)
        self.emit(
            t,
            anvil,
            f"statistics: max connection rate {rng.randrange(2, 30)}/60s for (smtp:{ip}) at {at}",
        )
        self.emit(
            t,
            anvil,
            f"statistics: max connection count {rng.randrange(1, 8)} for (smtp:{ip}) at {at}",
        )
        self.emit(t, anvil, f"statistics: max cache size {rng.randrange(5, 80)} at {at}")
        scache = f"postfix/scache[{self.daemon_pid('postfix/scache')}]"
        hits, miss = rng.randrange(0, 200), rng.randrange(1, 300)
        self.emit(t + 0.5, scache, f"statistics: start interval {at}")
        self.emit(
            t + 0.5,
            scache,
            f"statistics: domain lookup hits={hits} miss={miss} success={100 * hits // (hits + miss)}%",
        )
        self.emit(t + 0.5, scache, f"statistics: address lookup hits=0 miss={miss + 2} success=0%")
        self.emit(
            t + 0.5,
            scache,
            f"statistics: max simultaneous domains={rng.randrange(1, 9)} addresses={rng.randrange(1, 12)} connection={rng.randrange(1, 15)}",
        )
        if rng.random() < 0.5:
            self.emit(
                t + 1.2,
                f"postfix/smtp[{self.pid('postfix/smtp', t, t + 1)}]",
                "warning: TLS library problem: error:0A000126:SSL routines::unexpected eof while reading:../ssl/record/rec_layer_s3.c:317:",
            )


def _write_prefix(style: Style, rng: random.Random) -> Callable[[float], str]:
    """Timestamp + host prefix; cached per second since lines come in time order."""
    cache3164: list[Any] = [-1, ""]
    cache3339: list[Any] = [-1, ""]

    def p3164(t: float) -> str:
        sec = int(t)
        if sec != cache3164[0]:
            d = datetime.fromtimestamp(sec, UTC)
            cache3164[0] = sec
            cache3164[1] = f"{MONTHS[d.month - 1]} {d.day:2d} {d:%H:%M:%S} {HOST} "
        return cache3164[1]  # type: ignore[no-any-return]

    def p3339(t: float) -> str:
        sec = int(t)
        if sec != cache3339[0]:
            cache3339[0] = sec
            cache3339[1] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{cache3339[1]}.{int((t - sec) * 1_000_000):06d}+00:00 {HOST} "

    if style is Style.RFC3164:
        return p3164
    if style is Style.RFC3339:
        return p3339
    rnd = rng.random
    return lambda t: p3164(t) if rnd() < 0.5 else p3339(t)


def generate(cfg: GenConfig, want_truth: bool = False) -> tuple[Iterator[str], _Sim]:
    """Lines (each ending in "\\n"), in time order; `sim.truth` fills as lines are produced."""
    sim = _Sim(cfg, want_truth)
    return _lines(sim), sim


def _lines(sim: _Sim) -> Iterator[str]:
    cfg = sim.cfg
    rng = random.Random(cfg.seed ^ 0x5EED)
    prefix = _write_prefix(cfg.style, rng)
    heap = sim.heap
    pop = heapq.heappop
    expo = sim.rng.expovariate
    rate = cfg.sessions_per_second
    t0 = cfg.start.timestamp()
    next_arrival = t0
    next_noise = t0 + rng.uniform(1, cfg.noise_interval)
    next_prune = t0 + 3600.0
    produced = 0
    limit = cfg.lines
    while produced < limit:
        while not heap or heap[0][0] > next_arrival:
            if next_arrival >= next_noise:
                sim.noise(next_arrival)
                next_noise += cfg.noise_interval
            if next_arrival >= next_prune:
                sim.prune(next_arrival - 1.0)
                next_prune += 3600.0
            sim.session(next_arrival)
            next_arrival += expo(rate)
        t, _seq, text, hook = pop(heap)
        if hook is not None:
            for row, status, dsn, *relay in hook if isinstance(hook, list) else (hook,):
                row[3] = status
                if dsn is not None:
                    row[4] = dsn
                if relay:
                    row[5] = relay[0]
        yield f"{prefix(t)}{text}\n"
        produced += 1


def truth_records(sim: _Sim) -> Iterator[dict[str, Any]]:
    """Per recipient, the last outcome written to the file (rows never written are left out)."""
    for qid, rcpt, orig, status, dsn, relay, msgno, inst in sim.truth:
        if status is None:
            continue
        yield {
            "msg": msgno,
            "instance": inst,
            "queue_id": qid,
            "recipient": rcpt,
            "orig_to": orig,
            "status": status,
            "dsn": dsn,
            "relay": relay,
        }


def write_log(cfg: GenConfig, out: IO[bytes], truth: IO[str] | None = None) -> GenStats:
    started = time.perf_counter()
    lines, sim = generate(cfg, want_truth=truth is not None)
    n, total = write_chunked(lines, out)
    rows = 0
    if truth is not None:
        for rec in truth_records(sim):
            truth.write(json.dumps(rec, separators=(",", ":")) + "\n")
            rows += 1
    return GenStats(
        lines=n,
        bytes=total,
        seconds=time.perf_counter() - started,
        messages=sim.messages,
        truth_rows=rows,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--out", type=Path, required=True, help="output file ('-' for stdout)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--style", type=Style, choices=list(Style), default=Style.MIXED)
    ap.add_argument(
        "--start",
        type=datetime.fromisoformat,
        default=DEFAULT_START,
        help="simulated start time, ISO 8601 with offset [2026-03-02T06:00:00+00:00]",
    )
    ap.add_argument("--truth", type=Path, help="write per-recipient ground truth (JSON lines)")
    args = ap.parse_args(argv)
    start = args.start if args.start.tzinfo else args.start.replace(tzinfo=UTC)
    cfg = GenConfig(lines=args.lines, seed=args.seed, style=args.style, start=start.astimezone(UTC))
    truth_fh = args.truth.open("w", encoding="utf-8") if args.truth else None
    try:
        if str(args.out) == "-":
            stats = write_log(cfg, sys.stdout.buffer, truth_fh)
        else:
            with args.out.open("wb") as fh:
                stats = write_log(cfg, fh, truth_fh)
    finally:
        if truth_fh is not None:
            truth_fh.close()
    rate = stats.lines / stats.seconds if stats.seconds else 0.0
    print(
        f"wrote {stats.lines} lines, {stats.bytes / 1e6:.1f} MB "
        f"({stats.bytes / max(stats.lines, 1):.0f} B/line), {stats.messages} messages, "
        f"{stats.truth_rows} truth rows in {stats.seconds:.1f}s ({rate:,.0f} lines/s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
