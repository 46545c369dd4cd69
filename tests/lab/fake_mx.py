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
import socket
import threading
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
# (local-part prefix, reply after the DATA terminator).
DATA_REPLIES: Final[tuple[tuple[str, str], ...]] = (("bigdata", "552 5.3.4 message too big"),)


def free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _local_part(address: str) -> str:
    return address.rsplit("@", 1)[0].lower()


def rcpt_reply(address: str) -> str | None:
    """The reply for ``RCPT TO:<address>``, or ``None`` to accept it."""
    local = _local_part(address)
    for prefix, reply in RCPT_REPLIES:
        if local.startswith(prefix):
            return reply
    return None


def data_reply(recipients: list[str]) -> str | None:
    """The reply after the message data, or ``None`` to accept the message."""
    for address in recipients:
        local = _local_part(address)
        for prefix, reply in DATA_REPLIES:
            if local.startswith(prefix):
                return reply
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

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = rcpt_reply(address)
        if reply is None:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"
        if reply.startswith("421") and server.transport is not None:
            # RFC 5321 3.8: after 421 the server closes the channel. Close once the reply is
            # flushed: the SMTP loop pushes the reply, then yields waiting for the next line.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = data_reply(list(envelope.rcpt_tos))
        if reply is not None:
            return reply
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


class FakeMX:
    """The fake MX; ``port`` is chosen when constructed (or pass one)."""

    def __init__(self, port: int | None = None, *, hostname: str = "mx.example.com") -> None:
        self.host: Final = "127.0.0.1"
        self.port: Final = port if port is not None else free_loopback_port()
        self._handler = _Handler()
        # server_hostname is given so aiosmtpd does not call socket.getfqdn() (a resolver call).
        self._controller = Controller(
            self._handler,
            hostname=self.host,
            port=self.port,
            server_hostname=hostname,
            ready_timeout=10.0,
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
