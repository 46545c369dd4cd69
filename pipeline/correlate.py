"""Correlation: Postfix records, line by line, into message instances and delivery attempts.

A message instance is (host, queue ID) from the line that creates its queue file (smtpd
``client=``, pickup ``uid=``, qmqpd) to qmgr's ``removed``. Queue IDs are reused once a queue
file is gone, so an instance is keyed by (host, queue ID, first time seen), and a record for a
queue ID with no open instance starts a new one. Instances idle longer than ``stale_after`` are
dropped from memory (they stay in the store as they were last written): by default
:func:`stale_horizon` of Postfix's queue lifetime, so that a message Postfix still retries is
never split in two.

The correlator only builds rows; :mod:`mtalens.pipeline.ingest` decides when they are committed. Open
instances are written at every commit (so a restart can reload them) and rewritten as they
change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, TypeVar

from mtalens.parsers import postfix as pf

ClassifyFn = Callable[..., Any]

MESSAGE_COLUMNS = (
    "message_key", "host", "queue_id", "origin", "message_id", "sender", "size", "nrcpt",
    "client_name", "client_ip", "client_port", "sasl_method", "sasl_username", "orig_queue_id",
    "orig_message_key", "bounce_of_key", "notification_kind", "first_seen", "arrived_at",
    "removed_at", "expired_at", "last_seen", "held", "discarded", "rejected", "source_key",
)  # fmt: skip

DELIVERY_COLUMNS = (
    "message_key", "host", "queue_id", "logged_at", "service", "instance", "recipient",
    "orig_recipient", "relay", "relay_host", "relay_ip", "relay_port", "conn_use", "delay",
    "delay_before_queue", "delay_in_queue", "delay_connect", "delay_transmit", "dsn", "status",
    "reply_code", "smtp_stage", "diagnostic", "remote_host", "reason", "category", "hard",
    "rule_id", "blocklist", "source_key", "line_offset",
)  # fmt: skip

# instance: the syslog tag before the service (postfix-out of postfix-out/smtpd), as in
# delivery_log; rejection, auth-failure and event rows have it since migration 0011
REJECTION_COLUMNS = (
    "logged_at", "host", "service", "instance", "queue_id", "action", "stage", "client_name",
    "client_ip", "reply_code", "dsn", "reason", "sender", "recipient", "helo", "proto",
    "source_key", "line_offset",
)  # fmt: skip

AUTH_COLUMNS = (
    "logged_at", "host", "service", "instance", "client_name", "client_ip", "mechanism",
    "sasl_username", "reason", "source_key", "line_offset",
)  # fmt: skip

EVENT_COLUMNS = (
    "logged_at", "host", "service", "instance", "kind", "queue_id", "remote_host", "remote_ip",
    "detail", "source_key", "line_offset",
)  # fmt: skip


@dataclass(slots=True)
class MessageState:
    message_key: str
    host: str
    queue_id: str
    first_seen: datetime
    last_seen: datetime
    origin: str = "unknown"
    message_id: str | None = None
    sender: str | None = None
    size: int | None = None
    nrcpt: int | None = None
    client_name: str | None = None
    client_ip: str | None = None
    client_port: int | None = None
    sasl_method: str | None = None
    sasl_username: str | None = None
    orig_queue_id: str | None = None
    orig_message_key: str | None = None
    bounce_of_key: str | None = None
    notification_kind: str | None = None
    arrived_at: datetime | None = None
    removed_at: datetime | None = None
    expired_at: datetime | None = None
    held: bool = False
    discarded: bool = False
    rejected: bool = False
    source_key: str | None = None
    persisted: bool = False  # a row for this key is already in the store
    # the recipients with a final status, for a format that logs no removal (ends_when_final)
    final_rcpts: set[str] | None = None

    def row(self) -> tuple[Any, ...]:
        return (
            self.message_key, self.host, self.queue_id, self.origin, self.message_id,
            self.sender, self.size, self.nrcpt, self.client_name, self.client_ip,
            self.client_port, self.sasl_method, self.sasl_username, self.orig_queue_id,
            self.orig_message_key, self.bounce_of_key, self.notification_kind, self.first_seen,
            self.arrived_at, self.removed_at, self.expired_at, self.last_seen, self.held,
            self.discarded, self.rejected, self.source_key,
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MessageState:
        st = cls(
            message_key=row["message_key"],
            host=row["host"],
            queue_id=row["queue_id"],
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
        )
        for name in MESSAGE_COLUMNS:
            if name in row and name not in ("message_key", "host", "queue_id"):
                setattr(st, name, row[name])
        st.persisted = True
        return st


def message_key(host: str, queue_id: str, first_seen: datetime) -> str:
    return f"{host}|{queue_id}|{int(first_seen.timestamp() * 1_000_000)}"


@dataclass(slots=True)
class Batch:
    """Rows built since the last commit, column-ready."""

    deliveries: list[tuple[Any, ...]] = field(default_factory=list)
    rejections: list[tuple[Any, ...]] = field(default_factory=list)
    auth_failures: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    touched: dict[str, MessageState] = field(default_factory=dict)

    def __len__(self) -> int:
        return (
            len(self.deliveries) + len(self.rejections) + len(self.auth_failures)
            + len(self.events) + len(self.touched)
        )  # fmt: skip


_CREATING = (pf.Client, pf.Pickup)
# the statuses after which an MTA makes no further attempt for a recipient
FINAL_STATUSES: Final = frozenset({"sent", "bounced", "expired", "suppressed"})

# Postfix keeps retrying a deferred message until it has been queued maximal_queue_lifetime
# (default 5d; a bounce message bounce_queue_lifetime, default the same): postconf(5).
DEFAULT_QUEUE_LIFETIME: Final = timedelta(days=5)
# How much longer than the queue lifetime a message may stay silent in the log and still be the
# same message: qmgr(8) gives a message up only at its next delivery attempt after the lifetime,
# up to maximal_backoff_time later (default 4000s, postconf(5)), later still when the queue is
# backlogged or Postfix was stopped meanwhile; syslog timestamps may also jump by a DST hour.
# 3 days covers these with room and keeps the 8-day horizon of earlier versions for the
# default lifetime. (A message held longer than that in the hold queue is still split.)
QUEUE_LIFETIME_MARGIN: Final = timedelta(days=3)


# postlogd(8) (maillog_file) writes the lines of all Postfix processes in the order they reach
# it, so under load bounce(8)'s "QID: sender non-delivery notification: NEWID" can come after
# NEWID was delivered and "removed" (seen with the lab's Postfix 3.7 on a loaded machine). Such
# a NEWID is still linked when it is among the recently closed messages (Correlator.recent), was
# made by Postfix itself (no smtpd/pickup origin; RFC 3464 section 2: notifications go out with
# the null sender) and first seen at most LATE_LINK_WINDOW before the notification line.
LATE_LINK_WINDOW: Final = timedelta(minutes=10)


class _Linkable(Protocol):
    origin: str
    sender: str | None
    bounce_of_key: str | None
    first_seen: Any  # datetime here, microseconds in pipeline/fastpath.py


_L = TypeVar("_L", bound=_Linkable)


def late_notification_target(closed: _L | None, not_before: Any) -> _L | None:
    """``closed`` if a notification logged late may name it (see LATE_LINK_WINDOW)."""
    if closed is None or closed.bounce_of_key is not None:
        return None
    if closed.origin not in ("unknown", "bounce") or closed.sender not in (None, ""):
        return None
    return closed if closed.first_seen >= not_before else None


# (reason, category, hard, rule_id, blocklist): the classification columns of a delivery row
DeliveryClass = tuple[str | None, str | None, bool | None, str | None, str | None]
SENT_CLASS: Final[DeliveryClass] = ("delivered", "success", None, "status-sent", None)
UNCLASSIFIED: Final[DeliveryClass] = (None, None, None, None, None)


def classify_delivery(
    classify: ClassifyFn | None,
    status: str,
    dsn: str | None,
    reply_code: int | None,
    detail: str | None,
    remote_host: str | None,
    relay_host: str | None,
    smtp_stage: str | None,
) -> DeliveryClass:
    """The classification of a Postfix delivery from its logged fields: the one mapping of a
    delivery to the classifier's inputs, for this correlator and pipeline/fastpath.py's (whose
    C scanner hands these fields over in this order, ``OP_DELIVERY``)."""
    if status == "sent":
        return SENT_CLASS
    if classify is None:
        return UNCLASSIFIED
    cl = classify(
        status=dsn,
        reply_code=reply_code,
        diagnostic=detail,
        remote_host=remote_host or relay_host,
        # the command the reply answered: "(in reply to RCPT TO command)", "while sending ..."
        command=smtp_stage,
        # only a bounce is a final failure; a deferral is a temporary one, not a DSN
        # "delayed" notice (RFC 3464 2.3.3), so no Action is implied for it
        action="failed" if status == "bounced" else None,
    )
    return (cl.reason, cl.category, cl.hard, cl.rule_id, cl.blocklist)


def stale_horizon(queue_lifetime: timedelta = DEFAULT_QUEUE_LIFETIME) -> timedelta:
    """How long an open message may go unlogged before it is forgotten: the queue lifetime
    plus :data:`QUEUE_LIFETIME_MARGIN`."""
    return queue_lifetime + QUEUE_LIFETIME_MARGIN


DEFAULT_STALE_AFTER: Final = stale_horizon()


def host_clocks(states: Iterable[Any]) -> dict[str, Any]:
    """The newest ``last_seen`` of the given open messages, by host (both correlators' idea of
    a host's present time when they evict stale messages)."""
    now: dict[str, Any] = {}
    for st in states:
        seen = now.get(st.host)
        if seen is None or st.last_seen > seen:
            now[st.host] = st.last_seen
    return now


def ends_message(service: str, rec: pf.Reject) -> bool:
    """A reject or discard that ends a message Postfix never queues, so no ``removed`` follows:
    cleanup(8)'s header/body checks and milter verdicts, and smtpd(8)'s at or after DATA. (An
    smtpd reject at RCPT with a queue ID refuses one recipient of a message that goes on.)"""
    if rec.action not in ("reject", "milter-reject", "discard", "milter-discard"):
        return False
    return service == "cleanup" or rec.stage in ("DATA", "END-OF-MESSAGE")


class Correlator:
    def __init__(
        self,
        classify: ClassifyFn | None = None,
        *,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        recent_size: int = 20_000,
        unique_ids: bool = False,
        ends_when_final: bool = False,
    ) -> None:
        """``unique_ids`` and ``ends_when_final`` are a log format's lifecycle rules
        (:class:`mtalens.parsers.formats.LogFormat`): a queue id names one message only, so a
        record about a message already seen (open, or recently closed) belongs to it, also a
        creating one; and a message ends once as many recipients as it was queued for
        (``nrcpt``) have a final status, or its queue lifetime ran out, as no line says it
        was removed."""
        self.open: dict[tuple[str, str], MessageState] = {}
        # the last recent_size messages closed, by (host, queue ID): for re-injected mail
        # (orig_queue_id), a line logged twice, and a notification logged late
        self.recent: OrderedDict[tuple[str, str], MessageState] = OrderedDict()
        self.pending_links: dict[tuple[str, str], tuple[str, str]] = {}  # new qid -> (key, kind)
        self.classify = classify
        self.stale_after = stale_after
        self.recent_size = recent_size
        self.unique_ids = unique_ids
        self.ends_when_final = ends_when_final
        # ends_when_final: (host, queue id) of transactions that ended before their envelope was
        # logged (refused while the data was read, the client went): their envelope line ends them
        self.aborted: OrderedDict[tuple[str, str], None] = OrderedDict()
        # unique_ids: rejections of this batch logged before their message's client (Sendmail
        # refuses a recipient before it logs the envelope), by (host, queue id): row positions
        self.clientless: dict[tuple[str, str], list[int]] = {}
        self.batch = Batch()

    # -- state ---------------------------------------------------------------------------------

    def load_open(self, states: list[MessageState]) -> None:
        for st in states:
            self.open[(st.host, st.queue_id)] = st

    def _remember_closed(self, st: MessageState) -> None:
        k = (st.host, st.queue_id)
        self.recent[k] = st
        self.recent.move_to_end(k)
        while len(self.recent) > self.recent_size:
            self.recent.popitem(last=False)

    def _new(self, host: str, qid: str, at: datetime, source_key: str, origin: str) -> MessageState:
        old = self.open.pop((host, qid), None)
        if old is not None:
            self._remember_closed(old)
        st = MessageState(
            message_key=message_key(host, qid, at),
            host=host,
            queue_id=qid,
            first_seen=at,
            last_seen=at,
            origin=origin,
            source_key=source_key,
        )
        link = self.pending_links.pop((host, qid), None)
        if link is not None:
            st.bounce_of_key, st.notification_kind = link
            st.origin = "bounce"
        self.open[(host, qid)] = st
        return st

    def _reopen(self, host: str, qid: str) -> MessageState | None:
        """With unique ids: a recently closed message gets its late records back."""
        st = self.recent.pop((host, qid), None)
        if st is not None:
            self.open[(host, qid)] = st
        return st

    def _close(self, st: MessageState, at: datetime) -> None:
        st.removed_at = at
        self.open.pop((st.host, st.queue_id), None)
        self._remember_closed(st)

    def _get(self, host: str, qid: str, at: datetime, source_key: str) -> MessageState:
        st = self.open.get((host, qid))
        if st is None and self.unique_ids:
            st = self._reopen(host, qid)
        if st is None:
            st = self._new(host, qid, at, source_key, "unknown")
        st.last_seen = at
        self.batch.touched[st.message_key] = st
        return st

    def evict_stale(self) -> None:
        """Forget open instances idle for longer than ``stale_after`` (their rows stay), by
        their host's clock: the newest line of an open message of the same host. Not by the
        newest line read: files of several hosts or months read in one run (an archive) would
        otherwise forget the open messages of an older file at its first commit."""
        now = host_clocks(self.open.values())
        stale = self.stale_after
        for k in [k for k, st in self.open.items() if st.last_seen < now[st.host] - stale]:
            st = self.open.pop(k)
            self._remember_closed(st)
            self.batch.touched[st.message_key] = st

    def take_batch(self) -> Batch:
        b = self.batch
        self.batch = Batch()
        self.clientless.clear()
        return b

    # -- records -------------------------------------------------------------------------------

    def feed(
        self,
        rec: pf.Record,
        *,
        at: datetime,
        host: str,
        instance: str,
        service: str,
        source_key: str,
        offset: int,
    ) -> None:
        if isinstance(rec, pf.Delivery):
            self._delivery(rec, at, host, instance, service, source_key, offset)
        elif isinstance(rec, _CREATING):
            seen = None
            if self.unique_ids:
                seen = self.open.get((host, rec.queue_id)) or self._reopen(host, rec.queue_id)
            if seen is not None:
                st = seen
                st.last_seen = at
                st.origin = "pickup"
            else:
                st = self._new(host, rec.queue_id, at, source_key, "pickup")
            self.batch.touched[st.message_key] = st
            if isinstance(rec, pf.Client):
                for i in self.clientless.pop((host, rec.queue_id), ()):
                    row = self.batch.rejections[i]  # the client it was refused for
                    self.batch.rejections[i] = (*row[:7], rec.client_name, rec.client_ip, *row[9:])
                st.origin = "qmqpd" if service == "qmqpd" else "smtpd"
                st.client_name = rec.client_name
                st.client_ip = rec.client_ip
                st.client_port = rec.client_port
                st.sasl_method = rec.sasl_method
                st.sasl_username = rec.sasl_username
                if rec.orig_queue_id:
                    st.orig_queue_id = rec.orig_queue_id
                    ok = (host, rec.orig_queue_id)
                    prev = self.open.get(ok) or self.recent.get(ok)
                    st.orig_message_key = prev.message_key if prev else None
            else:
                st.sender = rec.sender
            if st.bounce_of_key:
                st.origin = "bounce"
        elif isinstance(rec, pf.MessageId):
            st = self._get(host, rec.queue_id, at, source_key)
            if not rec.resent or st.message_id is None:
                st.message_id = rec.message_id
        elif isinstance(rec, pf.QueueActive):
            st = self._get(host, rec.queue_id, at, source_key)
            st.sender = rec.sender
            st.size = rec.size
            st.nrcpt = rec.nrcpt
            if st.arrived_at is None:
                st.arrived_at = at
            if self.ends_when_final:
                if (host, rec.queue_id) in self.aborted:
                    del self.aborted[(host, rec.queue_id)]
                    self._close(st, at)
                else:
                    self._maybe_end(st, at)
        elif isinstance(rec, pf.Removed):
            self._close(self._get(host, rec.queue_id, at, source_key), at)
        elif isinstance(rec, pf.Expired):
            st = self._get(host, rec.queue_id, at, source_key)
            st.expired_at = at
            if st.sender is None:
                st.sender = rec.sender
            if self.ends_when_final:
                self._close(st, at)
        elif isinstance(rec, pf.Notification):
            # the message the notification is about may be removed already (late line, see
            # LATE_LINK_WINDOW): then it is named, not reopened as a new instance
            k = (host, rec.queue_id)
            gone = None if k in self.open else self.recent.get(k)
            if gone is not None and gone.last_seen >= at - LATE_LINK_WINDOW:
                st = gone
            else:
                st = self._get(host, rec.queue_id, at, source_key)
            nk = (host, rec.new_queue_id)
            new = self.open.get(nk)
            if new is None:
                new = late_notification_target(self.recent.get(nk), at - LATE_LINK_WINDOW)
            if new is not None and new.bounce_of_key is None:
                new.bounce_of_key = st.message_key
                new.notification_kind = rec.kind
                new.origin = "bounce"
                self.batch.touched[new.message_key] = new
            else:
                self.pending_links[nk] = (st.message_key, rec.kind)
            self._event(at, host, service, instance, "notification-" + rec.kind, rec.queue_id,
                        None, None, rec.new_queue_id, source_key, offset)  # fmt: skip
        elif isinstance(rec, pf.Reject):
            if rec.queue_id is not None:
                st = self._get(host, rec.queue_id, at, source_key)
                if rec.action in ("reject", "milter-reject"):
                    st.rejected = True
                elif rec.action in ("hold", "milter-hold"):
                    st.held = True
                elif rec.action in ("discard", "milter-discard"):
                    st.discarded = True
                if ends_message(service, rec):
                    self.open.pop((host, rec.queue_id), None)
                    self._remember_closed(st)
                    if self.ends_when_final:
                        self._abort(host, rec.queue_id)
            if self.unique_ids and rec.queue_id is not None and rec.client_ip is None:
                key = (host, rec.queue_id)
                self.clientless.setdefault(key, []).append(len(self.batch.rejections))
            self.batch.rejections.append(
                (at, host, service, instance, rec.queue_id, rec.action, rec.stage,
                 rec.client_name, rec.client_ip, rec.reply_code, rec.dsn, rec.reason, rec.sender,
                 rec.recipient, rec.helo, rec.proto, source_key, offset)
            )  # fmt: skip
        elif isinstance(rec, pf.AuthFailure):
            self.batch.auth_failures.append(
                (at, host, service, instance, rec.client_name, rec.client_ip, rec.mechanism,
                 rec.sasl_username, rec.reason, source_key, offset)
            )  # fmt: skip
        elif isinstance(rec, pf.Event):
            if self.ends_when_final and rec.kind == "lost-connection" and rec.queue_id:
                st_lost = self.open.get((host, rec.queue_id))
                if st_lost is None or st_lost.arrived_at is None:  # before its envelope
                    self._abort(host, rec.queue_id)
            self._event(at, host, service, instance, rec.kind, rec.queue_id, rec.remote_host,
                        rec.remote_ip, rec.detail, source_key, offset)  # fmt: skip

    def _abort(self, host: str, qid: str) -> None:
        self.aborted[(host, qid)] = None
        while len(self.aborted) > self.recent_size:  # the oldest, whose envelope never came
            self.aborted.popitem(last=False)

    def _event(
        self,
        at: datetime,
        host: str,
        service: str,
        instance: str,
        kind: str,
        qid: str | None,
        rhost: str | None,
        rip: str | None,
        detail: str,
        source_key: str,
        offset: int,
    ) -> None:
        self.batch.events.append(
            (at, host, service, instance, kind, qid, rhost, rip, detail, source_key, offset)
        )

    def _delivery(
        self,
        d: pf.Delivery,
        at: datetime,
        host: str,
        instance: str,
        service: str,
        source_key: str,
        offset: int,
    ) -> None:
        st = self._get(host, d.queue_id, at, source_key)
        a = b = c = e = None
        if d.delays is not None:
            a, b, c, e = d.delays
        elif d.delivery_time is not None:
            # Exim's DT= and Sendmail's xdelay= time the whole delivery attempt, connection
            # setup and transmission together: stored as the transmission stage, and what the
            # delay has beyond it as time in the queue (before the queue and connection: unknown)
            e = d.delivery_time
            if d.delay is not None and d.delay >= e:
                b = d.delay - e
        reason, category, hard, rule_id, blocklist = classify_delivery(
            self.classify, d.status, d.dsn, d.reply_code, d.detail, d.remote_host, d.relay_host,
            d.smtp_stage,
        )  # fmt: skip
        self.batch.deliveries.append(
            (st.message_key, host, d.queue_id, at, service, instance, d.recipient,
             d.orig_recipient, d.relay, d.relay_host, d.relay_ip, d.relay_port, d.conn_use,
             d.delay, a, b, c, e, d.dsn, d.status, d.reply_code, d.smtp_stage, d.detail,
             d.remote_host, reason, category, hard, rule_id, blocklist, source_key, offset)
        )  # fmt: skip
        if self.ends_when_final and d.status in FINAL_STATUSES:
            if st.final_rcpts is None:
                st.final_rcpts = set()
            st.final_rcpts.add(d.recipient)
            self._maybe_end(st, at)

    def _maybe_end(self, st: MessageState, at: datetime) -> None:
        """``ends_when_final``: close ``st`` once it has as many final recipients as it was
        queued for (``nrcpt``; none when none was accepted; one for a notification)."""
        expected = st.nrcpt
        if expected is None and st.bounce_of_key is not None:
            expected = 1  # a notification the MTA made (logged with no from=) has one recipient
        if expected is not None and len(st.final_rcpts or ()) >= expected:
            self._close(st, at)
