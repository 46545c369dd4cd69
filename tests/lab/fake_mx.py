"""A fake remote MX on 127.0.0.1 that answers by recipient local part.

The lab's Postfix relays every remote domain to this server (``smtp:[127.0.0.1]:PORT``), so
each outcome a real MTA can meet is one recipient away:

============  =====  ===========================================================  ============
local part    stage  reply                                                        outcome
============  =====  ===========================================================  ============
``ok*``       RCPT   250 2.1.5 Ok                                                 sent
``unknown*``  RCPT   550 5.1.1 user unknown                                       bounced
``full*``     RCPT   552 5.2.2 mailbox full                                       bounced
``listed*``   RCPT   554 5.7.1 Service unavailable; client [127.0.0.1] blocked    bounced
                     using zen.spamhaus.org
``defer*``    RCPT   450 4.2.0 temporarily deferred                               expires
``busy*``     RCPT   421 4.7.0 try later (and the connection is closed)           expires
``bigdata*``  DATA   250 at RCPT, 552 5.3.4 after the message data                bounced
other         RCPT   250 (accepted like ``ok*``)                                  sent
============  =====  ===========================================================  ============

Problem kinds for ``mtalens diagnose`` (``tests/test_diagnose_real_postfix.py``), each the
documented reply text of a real receiver (sources next to ``PROBLEM_RCPT_REPLIES``):

================  =====  ==========================================================  =========
local part        stage  reply                                                       outcome
================  =====  ==========================================================  =========
``grey*``         RCPT   450 4.7.1 Greylisted (postgrey) on the first attempt of a   sent later
                         (sender, recipient) pair, 250 once ``greylist_delay`` passed
``ratelimit*``    RCPT   Gmail's multi-line 421 4.7.28 "rate limited" (then closes)  expires
``serverbusy*``   RCPT   451 4.7.500 Server busy (Exchange Online)                   expires
``barracuda*``    RCPT   554 blocked using Barracuda Reputation                      bounced
``spf*``          RCPT   550 5.7.1 SPF fail (pypolicyd-spf)                          bounced
``relaydenied*``  RCPT   554 5.7.1 Relay access denied (Postfix smtpd)               bounced
``dmarc*``        DATA   Gmail's 550 5.7.26 DMARC policy rejection                   bounced
``dkim*``         DATA   550 5.7.20 No passing DKIM signature found (RFC 7372)       bounced
``noptr*``        DATA   Gmail's 550 5.7.25 missing PTR record                       bounced
``slow*``         DATA   250, but only after ``slow_data_seconds``                   sent
================  =====  ==========================================================  =========

``FakeMX(host=...)`` listens on any 127.0.0.0/8 address (Linux answers for the whole block on
``lo``), so one lab can run several fake MX hosts; ``tls_context=`` makes it offer STARTTLS
(RFC 3207) and ``hostname=`` sets the name in its greeting (a name equal to Postfix's
``myhostname`` makes smtp(8) report a mail loop).

Reply codes follow RFC 5321 section 4.2 (4yz transient, 5yz permanent; 421 means the server
closes the channel, section 3.8); enhanced status codes follow RFC 3463 (X.1.1 bad mailbox,
X.2.2 mailbox full, X.3.4 message too big for system, X.7.1 delivery not authorized,
X.2.0 / X.7.0 other mailbox / security status). The "blocked using" wording is the reply shape of
DNSBL rejections (Postfix postconf(5), ``rbl_reply_maps`` default ``$rbl_code Service
unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain``).

Runs aiosmtpd's ``Controller`` (its own event loop in a thread): ``start()`` / ``stop()``, or use
it as a context manager.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

LISTED_ZONE: Final = "zen.spamhaus.org"

# (local-part prefix, reply at RCPT time); first match wins. ``None`` = accept at RCPT.
RCPT_REPLIES: Final[tuple[tuple[str, str | None], ...]] = (
    ("ok", None),
    ("unknown", "550 5.1.1 user unknown"),
    ("full", "552 5.2.2 mailbox full"),
    ("listed", f"554 5.7.1 Service unavailable; client [127.0.0.1] blocked using {LISTED_ZONE}"),
    ("defer", "450 4.2.0 temporarily deferred"),
    ("busy", "421 4.7.0 try later"),
    ("bigdata", None),
)


def _multiline(code: str, status: str, lines: tuple[str, ...]) -> str:
    """An RFC 5321 section 4.2.1 multi-line reply: ``code-status text`` lines, the last one
    ``code status text``, as Gmail sends them (status repeated on each line)."""
    head = [f"{code}-{status} {line}" for line in lines[:-1]]
    return "\r\n".join([*head, f"{code} {status} {lines[-1]}"])


# Reply texts of the problem kinds; ``{rcpt}``, ``{domain}`` and ``{sender}`` are filled in.
PROBLEM_RCPT_REPLIES: Final[tuple[tuple[str, str | None], ...]] = (
    # postgrey(8) --greylist-text default "Greylisted, see http://postgrey.schweikert.ch/help/
    # %r.html" behind Postfix's DEFER_IF_PERMIT (access(5): "450 4.7.1 ... Recipient address
    # rejected"); answered only on a first attempt, see _Handler.greylist.
    (
        "grey",
        "450 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/{domain}.html",
    ),
    # Gmail, https://support.google.com/a/answer/3726730 (421 4.7.28 "unusual rate of
    # unsolicited mail ... temporarily rate limited").
    (
        "ratelimit",
        _multiline(
            "421",
            "4.7.28",
            (
                "[127.0.0.1      15] Our system has detected an unusual rate of",
                "unsolicited mail originating from your IP address. To protect our",
                "users from spam, mail sent from your IP address has been temporarily",
                "rate limited. For more information, go to",
                " https://support.google.com/mail/?p=UnsolicitedRateLimitError lab - gsmtp",
            ),
        ),
    ),
    # Exchange Online, https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/
    # non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online
    # ("4.7.500-699 ... Server busy, please try again later").
    ("serverbusy", "451 4.7.500 Server busy. Please try again later from [127.0.0.1]. (S77714)"),
    # Barracuda's reputation block reply, https://www.barracudacentral.org/rbl.
    (
        "barracuda",
        "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using "
        "Barracuda Reputation; http://www.barracudanetworks.com/reputation/?pr=1&ip=127.0.0.1",
    ),
    # pypolicyd-spf (https://launchpad.net/pypolicyd-spf) behind Postfix smtpd's
    # check_policy_service: "Message rejected due to: SPF fail - not authorized".
    (
        "spf",
        "550 5.7.1 <{rcpt}>: Recipient address rejected: Message rejected due to: SPF fail "
        "- not authorized. Please see http://www.openspf.net/Why?s=mfrom;id={sender};"
        "ip=127.0.0.1;r={rcpt}",
    ),
    # Postfix smtpd(8) reject_unauth_destination (postconf(5) relay_domains_reject_code 554).
    ("relaydenied", "554 5.7.1 <{rcpt}>: Relay access denied"),
    ("dmarc", None),
    ("dkim", None),
    ("noptr", None),
    ("slow", None),
)
# (local-part prefix, reply after the DATA terminator).
DATA_REPLIES: Final[tuple[tuple[str, str], ...]] = (
    ("bigdata", "552 5.3.4 message too big"),
    # Gmail, https://support.google.com/a/answer/3726730 (550 5.7.26 "Unauthenticated email from
    # domain-name is not accepted due to domain's DMARC policy").
    (
        "dmarc",
        _multiline(
            "550",
            "5.7.26",
            (
                "Unauthenticated email from {sender_domain} is not accepted due to",
                "domain's DMARC policy. Please contact the administrator of",
                "{sender_domain} domain if this was a legitimate mail. To learn about",
                "the DMARC initiative, go to",
                " https://support.google.com/mail/?p=DmarcRejection lab - gsmtp",
            ),
        ),
    ),
    # RFC 7372 section 3.1: X.7.20 "No passing DKIM signature found".
    ("dkim", "550 5.7.20 No passing DKIM signature found"),
    # Gmail, https://support.google.com/a/answer/3726730 (550 5.7.25 missing PTR record).
    (
        "noptr",
        _multiline(
            "550",
            "5.7.25",
            (
                "[127.0.0.1] The IP address sending this message does not have a",
                "PTR record setup, or the corresponding forward DNS entry does not",
                "point to the sending IP. As a policy, Gmail does not accept messages",
                "from IPs with missing PTR records. For more information, go to",
                " https://support.google.com/mail/answer/81126#authentication lab - gsmtp",
            ),
        ),
    ),
)
# Local parts whose DATA is answered only after FakeMX.slow_data_seconds (a slow receiver:
# Postfix counts the wait in the transmission stage of "delays=a/b/c/d").
SLOW_PREFIX: Final = "slow"


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _local_part(address: str) -> str:
    return address.rsplit("@", 1)[0].lower()


def _fill(reply: str, rcpt: str, sender: str) -> str:
    return (
        reply.replace("{rcpt}", rcpt)
        .replace("{domain}", rcpt.rsplit("@", 1)[-1].lower())
        .replace("{sender_domain}", sender.rsplit("@", 1)[-1].lower())
        .replace("{sender}", sender)
    )


def rcpt_reply(address: str, sender: str = "") -> str | None:
    """The reply for ``RCPT TO:<address>``, or ``None`` to accept it."""
    local = _local_part(address)
    for prefix, reply in (*RCPT_REPLIES, *PROBLEM_RCPT_REPLIES):
        if local.startswith(prefix):
            return None if reply is None else _fill(reply, address, sender)
    return None


def data_reply(recipients: list[str], sender: str = "") -> str | None:
    """The reply after the message data, or ``None`` to accept the message."""
    for address in recipients:
        local = _local_part(address)
        for prefix, reply in DATA_REPLIES:
            if local.startswith(prefix):
                return _fill(reply, address, sender)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """One message the fake MX accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes


@dataclass(slots=True)
class _Handler:
    """aiosmtpd handler hooks (called on the controller's event loop thread)."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    greylist_delay: float = 2.0
    slow_data_seconds: float = 12.0
    # (sender, recipient) -> monotonic time of the first attempt (postgrey's triplet without
    # the client address: every attempt comes from 127.0.0.1).
    first_seen: dict[tuple[str, str], float] = field(default_factory=dict)

    def greylist(self, sender: str, address: str) -> bool:
        """True while (sender, address) is still greylisted; the first attempt starts it."""
        key = (sender.lower(), address.lower())
        now = time.monotonic()
        with self.lock:
            first = self.first_seen.setdefault(key, now)
        return now - first < self.greylist_delay

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        sender = envelope.mail_from or ""
        reply = rcpt_reply(address, sender)
        greylisted = reply is not None and reply.startswith("450") and "Greylisted" in reply
        if greylisted and not self.greylist(sender, address):
            reply = None  # retried after the greylisting delay: accepted
        if reply is None:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"
        if reply.startswith("421") and server.transport is not None:
            # RFC 5321 3.8: after 421 the server closes the channel. Close once the reply is
            # flushed: the SMTP loop pushes the reply, then yields waiting for the next line.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = data_reply(list(envelope.rcpt_tos), envelope.mail_from or "")
        if reply is not None:
            return reply
        if any(_local_part(a).startswith(SLOW_PREFIX) for a in envelope.rcpt_tos):
            await asyncio.sleep(self.slow_data_seconds)
        content = envelope.original_content or b""
        with self.lock:
            self.received.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=content,
                )
            )
        return "250 2.0.0 Ok: accepted"


# RFC 4954 section 5: a server that offers AUTH accepts an ``AUTH=<mailbox>`` (or ``AUTH=<>``)
# parameter on MAIL FROM. aiosmtpd offers AUTH after STARTTLS but answers that parameter with
# 555; Sendmail sends it (``AUTH=<>`` for mail whose author it does not trust).
_AUTH_PARAM: Final = re.compile(r"\s+AUTH=\S+", re.IGNORECASE)


class _SMTP(SMTP):
    async def smtp_MAIL(self, arg: str | None) -> None:
        await super().smtp_MAIL(None if arg is None else _AUTH_PARAM.sub("", arg))


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _SMTP(self.handler, **self.SMTP_kwargs)


class FakeMX:
    """The fake MX; ``port`` is chosen when constructed (or pass one)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        hostname: str = "mx.example.com",
        tls_context: ssl.SSLContext | None = None,
        greylist_delay: float = 2.0,
        slow_data_seconds: float = 12.0,
    ) -> None:
        self.host: Final = host
        self.port: Final = port if port is not None else free_loopback_port(host)
        self._handler = _Handler(greylist_delay=greylist_delay, slow_data_seconds=slow_data_seconds)
        # server_hostname is given so aiosmtpd does not call socket.getfqdn() (a resolver call).
        # With a tls_context aiosmtpd offers STARTTLS in its EHLO reply (RFC 3207).
        self._controller = _Controller(
            self._handler,
            hostname=self.host,
            port=self.port,
            server_hostname=hostname,
            ready_timeout=10.0,
            tls_context=tls_context,
        )
        self._running = False

    def start(self) -> FakeMX:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._controller.stop()
            self._running = False

    @property
    def received(self) -> list[Received]:
        with self._handler.lock:
            return list(self._handler.received)

    def __enter__(self) -> FakeMX:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
