"""The sending platforms' webhooks, received by ``mtalens watch --webhook-port`` (issue 13).

``POST /events/<provider>`` (amazonses, sendgrid, mailgun, postmark, sparkpost, mandrill,
postal). A request is answered 2xx only once its events are committed: the HTTP thread
authenticates it, queues it for the daemon's next write window (which decodes and stores the
events exactly as ``mtalens events ingest`` does, idempotent by the provider's event id) and
waits for that commit; a failed or late commit is answered 503 so that the provider retries.
Nothing unauthenticated is stored: a forged, unsigned, stale or oversized request is refused
(401/403/413/411) and counted in ``mtalens_webhook_requests_total{provider,outcome}``.

Each provider is authenticated its documented way:

- Amazon SES through SNS: the message signature (SignatureVersion 1: SHA1withRSA, 2:
  SHA256withRSA) over the fields SNS names, in its order, verified with the certificate at
  ``SigningCertURL``, which must be https on ``sns.<region>.amazonaws.com``
  (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html). The
  certificates are read from ``amazonses_certificates`` (a directory of PEM files named as the
  URL's last path segment: pinned, no network) or, with ``amazonses_fetch_certificates``,
  fetched from that URL once. ``amazonses_topics`` lists the TopicArns accepted. A
  SubscriptionConfirmation is verified, logged with its SubscribeURL and (with
  ``amazonses_confirm``) confirmed by a GET to it.
- SendGrid's Signed Event Webhook: ECDSA (P-256, SHA-256) over timestamp + raw body, the
  signature in ``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in
  ``X-Twilio-Email-Event-Webhook-Timestamp``, the public key as SendGrid shows it (base64 DER)
  (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features).
- Mailgun: HMAC-SHA256 with the webhook signing key over timestamp + token, in the body's
  ``signature`` object (https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks).
- Mandrill: ``X-Mandrill-Signature``, base64 HMAC-SHA1 with the webhook key over the webhook's
  URL followed by each POST parameter's name and value, sorted by name
  (https://mailchimp.com/developer/transactional/guides/track-respond-activity-webhooks/).
- Postmark and SparkPost: HTTP basic auth credentials set in the webhook's URL (Postmark's
  "Basic auth credentials", SparkPost's webhook "auth_type": "basic").
- Postal: ``X-Postal-Signature`` (RSA SHA-1) or ``X-Postal-Signature-256`` (RSA SHA-256) over
  the raw body, with the server's public key.

Replays: a signed timestamp (SNS ``Timestamp``, SendGrid's header, Mailgun's ``timestamp``)
older than ``max_age_seconds`` (or that far in the future) is refused as stale; inside that
window a repeated request is harmless (its events are already stored, by id), and a Mailgun
token or SNS MessageId seen before is answered 200 without storing anything again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mtalens.pipeline.config import WebhooksConfig

if TYPE_CHECKING:
    from mtalens.pipeline.metrics import Metrics
    from mtalens.pipeline.store import Store

log = logging.getLogger("mtalens.webhooks")

PROVIDERS: Final = ("amazonses", "sendgrid", "mailgun", "postmark", "sparkpost", "mandrill",
                    "postal")  # fmt: skip
COMMIT_WAIT: Final = 30.0  # seconds a request waits for its commit before it is answered 503
QUEUE_SIZE: Final = 256  # requests waiting for a window; more are answered 503 (retry later)
SEEN_SIZE: Final = 100_000  # Mailgun tokens and SNS message ids remembered
_SNS_HOST_SUFFIXES: Final = (".amazonaws.com", ".amazonaws.com.cn")


class Refused(Exception):
    """A request that is not stored: ``status`` for the answer, ``outcome`` for the metric."""

    def __init__(self, status: int, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.outcome = outcome
        self.detail = detail


@dataclass(slots=True)
class Request:
    provider: str
    url: str  # as the provider called it (for Mandrill's signature: the configured URL)
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


@dataclass(slots=True)
class Accepted:
    """An authenticated request, waiting for its commit (``done``) or answered already."""

    provider: str
    body: bytes  # what carries the events (Mandrill: the form value)
    status: int = 503
    done: threading.Event = field(default_factory=threading.Event)
    stored: int = 0


class _Seen:
    """A bounded set with insertion order: the oldest entries go first."""

    def __init__(self, size: int = SEEN_SIZE) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, key: str) -> bool:
        """True if ``key`` is new (and remember it)."""
        with self._lock:
            if key in self._items:
                return False
            self._items[key] = None
            while len(self._items) > self._size:
                self._items.popitem(last=False)
            return True


class Verifier:
    """The authentication of each provider (module docstring); ``check`` raises Refused or
    returns the bytes that hold the events, or None for a request that is fine but carries
    nothing to store (an SNS subscription confirmation, a repeated Mailgun token)."""

    def __init__(
        self,
        config: WebhooksConfig,
        *,
        clock: Callable[[], float] = time.time,
        fetch: Callable[[str], bytes] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._fetch = fetch or _https_get
        self._seen = _Seen()
        self._certs: dict[str, x509.Certificate] = {}

    def configured(self, provider: str) -> bool:
        c = self.config
        return {
            "amazonses": bool(c.amazonses_topics)
            and (c.amazonses_certificates is not None or c.amazonses_fetch_certificates),
            "sendgrid": c.sendgrid_public_key is not None,
            "mailgun": c.mailgun_signing_key is not None,
            "postmark": c.postmark_username is not None and c.postmark_password is not None,
            "sparkpost": c.sparkpost_username is not None and c.sparkpost_password is not None,
            "mandrill": c.mandrill_key is not None and c.mandrill_url is not None,
            "postal": c.postal_public_key is not None,
        }.get(provider, False)

    def check(self, req: Request) -> bytes | None:
        if not self.configured(req.provider):
            raise Refused(404, "unconfigured", f"no credentials for {req.provider} configured")
        method = getattr(self, f"_{req.provider}")
        result: bytes | None = method(req)
        return result

    # -- the providers --------------------------------------------------------------------------

    def _fresh(self, at: float, what: str) -> None:
        age = self.clock() - at
        if abs(age) > self.config.max_age_seconds:
            raise Refused(403, "stale", f"{what} is {age:.0f} s old (max_age_seconds "
                                         f"{self.config.max_age_seconds})")  # fmt: skip

    def _json(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise Refused(400, "bad_request", f"not JSON: {exc}") from None

    def _mailgun(self, req: Request) -> bytes | None:
        data = self._json(req.body)
        sig = data.get("signature") if isinstance(data, dict) else None
        if not isinstance(sig, dict):
            raise Refused(401, "unsigned", "no signature object")
        ts, token, given = (str(sig.get(k) or "") for k in ("timestamp", "token", "signature"))
        if not (ts and token and given):
            raise Refused(401, "unsigned", "signature without timestamp, token or signature")
        key = (self.config.mailgun_signing_key or "").encode()
        want = hmac.new(key, (ts + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, given.lower()):
            raise Refused(403, "bad_signature", "Mailgun signature does not match")
        try:
            self._fresh(float(ts), "the signature's timestamp")
        except ValueError:
            raise Refused(403, "bad_signature", "timestamp is not a number") from None
        if not self._seen.add(f"mailgun:{token}"):
            return None  # the same signed request again: stored the first time
        return req.body

    def _sendgrid(self, req: Request) -> bytes | None:
        sig = req.headers.get("x-twilio-email-event-webhook-signature")
        ts = req.headers.get("x-twilio-email-event-webhook-timestamp")
        if not sig or not ts:
            raise Refused(401, "unsigned", "no X-Twilio-Email-Event-Webhook-Signature/Timestamp")
        try:
            key = serialization.load_der_public_key(
                base64.b64decode(self.config.sendgrid_public_key or "")
            )
            signature = base64.b64decode(sig, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise Refused(403, "bad_signature", f"unreadable key or signature: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise Refused(403, "bad_signature", "the configured key is not an EC key")
        try:
            key.verify(signature, ts.encode() + req.body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Refused(403, "bad_signature", "SendGrid signature does not verify") from None
        try:
            self._fresh(float(ts), "the signature's timestamp")
        except ValueError:
            raise Refused(403, "bad_signature", "timestamp is not a number") from None
        return req.body

    def _basic(self, req: Request, user: str | None, password: str | None) -> bytes:
        got = req.headers.get("authorization", "")
        scheme, _, encoded = got.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise Refused(401, "unsigned", "no basic auth credentials")
        try:
            given = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise Refused(403, "bad_signature", "unreadable basic auth credentials") from None
        want = f"{user}:{password}".encode()
        if not hmac.compare_digest(given, want):
            raise Refused(403, "bad_signature", "wrong basic auth credentials")
        return req.body

    def _postmark(self, req: Request) -> bytes | None:
        return self._basic(req, self.config.postmark_username, self.config.postmark_password)

    def _sparkpost(self, req: Request) -> bytes | None:
        return self._basic(req, self.config.sparkpost_username, self.config.sparkpost_password)

    def _mandrill(self, req: Request) -> bytes | None:
        given = req.headers.get("x-mandrill-signature")
        if not given:
            raise Refused(401, "unsigned", "no X-Mandrill-Signature")
        try:
            params = urllib.parse.parse_qsl(req.body.decode("utf-8"), keep_blank_values=True,
                                            strict_parsing=True, max_num_fields=100)  # fmt: skip
        except (UnicodeDecodeError, ValueError) as exc:
            raise Refused(400, "bad_request", f"not a form: {exc}") from None
        signed = (self.config.mandrill_url or "") + "".join(k + v for k, v in sorted(params))
        want = base64.b64encode(
            hmac.new((self.config.mandrill_key or "").encode(), signed.encode(), hashlib.sha1)
            .digest()
        ).decode()  # fmt: skip
        if not hmac.compare_digest(want, given.strip()):
            raise Refused(403, "bad_signature", "Mandrill signature does not match")
        events = [v for k, v in params if k == "mandrill_events"]
        if len(events) != 1:
            raise Refused(400, "bad_request", "no single mandrill_events field")
        return events[0].encode()

    def _postal(self, req: Request) -> bytes | None:
        sig256 = req.headers.get("x-postal-signature-256")
        sig1 = req.headers.get("x-postal-signature")
        if not (sig256 or sig1):
            raise Refused(401, "unsigned", "no X-Postal-Signature")
        key = _public_key(self.config.postal_public_key or "")
        if not isinstance(key, rsa.RSAPublicKey):
            raise Refused(403, "bad_signature", "the configured Postal key is not an RSA key")
        algorithm: hashes.HashAlgorithm = hashes.SHA256() if sig256 else hashes.SHA1()
        try:
            key.verify(base64.b64decode(sig256 or sig1 or "", validate=True), req.body,
                       padding.PKCS1v15(), algorithm)  # fmt: skip
        except (InvalidSignature, ValueError, binascii.Error):
            raise Refused(403, "bad_signature", "Postal signature does not verify") from None
        return req.body

    def _amazonses(self, req: Request) -> bytes | None:
        msg = self._json(req.body)
        if not isinstance(msg, dict) or not isinstance(msg.get("Type"), str):
            raise Refused(400, "bad_request", "not an SNS message")
        kind = msg["Type"]
        names = _SNS_SIGNED.get(kind)
        if names is None:
            raise Refused(400, "bad_request", f"SNS message type {kind!r}")
        if msg.get("TopicArn") not in self.config.amazonses_topics:
            raise Refused(403, "bad_signature", f"topic {msg.get('TopicArn')!r} not configured")
        version = str(msg.get("SignatureVersion") or "")
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise Refused(403, "bad_signature", f"SignatureVersion {version!r}")
        parts: list[str] = []
        for name in names:
            value = msg.get(name)
            if value is None:
                if name == "Subject":
                    continue
                raise Refused(403, "bad_signature", f"SNS message without {name}")
            parts += [name, str(value)]
        signed = ("\n".join(parts) + "\n").encode()
        cert = self._sns_certificate(str(msg.get("SigningCertURL") or ""))
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Refused(403, "bad_signature", "SNS signing certificate without an RSA key")
        try:
            key.verify(base64.b64decode(str(msg.get("Signature") or ""), validate=True), signed,
                       padding.PKCS1v15(), algorithm)  # fmt: skip
        except (InvalidSignature, ValueError, binascii.Error):
            raise Refused(403, "bad_signature", "SNS signature does not verify") from None
        self._fresh(_iso_time(str(msg.get("Timestamp") or "")), "the SNS Timestamp")
        if kind != "Notification":
            self._subscription(msg)
            return None
        if not self._seen.add(f"sns:{msg.get('MessageId')}"):
            return None
        return req.body

    def _subscription(self, msg: Mapping[str, Any]) -> None:
        url = str(msg.get("SubscribeURL") or "")
        log.warning("SNS subscription message", extra={"type": msg.get("Type"),
                    "topic": msg.get("TopicArn"), "subscribe_url": url,
                    "confirming": self.config.amazonses_confirm})  # fmt: skip
        if msg.get("Type") == "SubscriptionConfirmation" and self.config.amazonses_confirm:
            _sns_url(url)  # https on an SNS host, or refused
            try:
                self._fetch(url)
            except OSError as exc:
                raise Refused(503, "confirm_failed", f"confirming failed: {exc}") from None

    def _sns_certificate(self, url: str) -> x509.Certificate:
        name = _sns_url(url)
        cached = self._certs.get(url)
        if cached is not None:
            return cached
        if self.config.amazonses_certificates is not None:
            path = Path(self.config.amazonses_certificates) / name
            try:
                pem = path.read_bytes()
            except OSError:
                raise Refused(403, "bad_signature", f"no pinned certificate {path}") from None
        else:
            try:
                pem = self._fetch(url)
            except OSError as exc:
                raise Refused(503, "certificate_unavailable", f"{url}: {exc}") from None
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise Refused(403, "bad_signature", f"{name}: not a PEM certificate") from None
        self._certs[url] = cert
        return cert


# The fields of each SNS message type that its signature covers, in this order
# (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html).
_SNS_SIGNED: Final = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}


def _sns_url(url: str) -> str:
    """The file name of an SNS URL (certificate or subscription) that is https on an
    ``sns.<region>.amazonaws.com`` host; Refused otherwise (a forged message names its own)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if (
        parts.scheme != "https"
        or not host.startswith("sns.")
        or not host.endswith(_SNS_HOST_SUFFIXES)
    ):
        raise Refused(403, "bad_signature", f"SNS URL not on an SNS host: {url[:200]!r}")
    name = parts.path.rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        raise Refused(403, "bad_signature", "SNS certificate URL without a file name")
    return name


def _iso_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        try:
            return parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError):
            raise Refused(403, "bad_signature", f"unreadable Timestamp {text[:40]!r}") from None


def _public_key(text: str) -> Any:
    """A PEM public key, or the base64 DER of one (how dashboards show them)."""
    data = text.strip().encode()
    try:
        if data.startswith(b"-----BEGIN"):
            return serialization.load_pem_public_key(data)
        return serialization.load_der_public_key(base64.b64decode(data))
    except (ValueError, binascii.Error):
        raise Refused(403, "bad_signature", "the configured public key is unreadable") from None


def _https_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read(1 << 20))


# -- the receiver ---------------------------------------------------------------------------


class WebhookReceiver:
    """The HTTP side: ``POST /events/<provider>``; accepted requests wait in ``pending`` for
    the watcher's window (:meth:`commit`)."""

    def __init__(
        self,
        config: WebhooksConfig,
        *,
        metrics: Metrics,
        wake: Callable[[], None],
        verifier: Verifier | None = None,
        commit_wait: float = COMMIT_WAIT,
    ) -> None:
        from mtalens.pipeline.metrics import _BoundedServer

        self.config = config
        self.metrics = metrics
        self.verifier = verifier or Verifier(config)
        self.pending: queue.Queue[Accepted] = queue.Queue(maxsize=QUEUE_SIZE)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10.0
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:  # Mandrill checks a webhook URL with HEAD
                self._answer(200 if self._provider() else 404, b"")

            def do_POST(self) -> None:
                provider = self._provider()
                if provider is None:
                    self._answer(404, b"unknown path\n")
                    return
                status, text = receiver.handle(provider, self)
                self._answer(status, text.encode() + b"\n")

            def _provider(self) -> str | None:
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) == 2 and parts[0] == "events" and parts[1] in PROVIDERS:
                    return parts[1]
                return None

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                return  # outcomes are counted and refusals logged once each, as JSON

        self._server = _BoundedServer((config.host, config.port or 0), Handler, metrics=metrics,
                                      max_connections=32, deadline=30 + commit_wait,
                                      name="webhook")  # fmt: skip
        self.commit_wait = commit_wait
        self.wake = wake
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="mtalens-webhooks")  # fmt: skip

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        while True:  # nothing waits for a window that will not come
            try:
                job = self.pending.get_nowait()
            except queue.Empty:
                break
            job.status = 503
            job.done.set()

    def _count(self, provider: str, outcome: str) -> None:
        self.metrics.inc("mtalens_webhook_requests_total",
                         "Webhook requests by provider and outcome (stored, duplicate, refused "
                         "kinds: unsigned, bad_signature, stale, too_large, ...).",
                         provider=provider, outcome=outcome)  # fmt: skip

    def handle(self, provider: str, h: BaseHTTPRequestHandler) -> tuple[int, str]:
        try:
            body = self._read_body(h)
            headers = {k.lower(): v for k, v in h.headers.items()}
            events = self.verifier.check(Request(provider, h.path, headers, body))
        except Refused as exc:
            self._count(provider, exc.outcome)
            log.warning("webhook refused", extra={"provider": provider, "outcome": exc.outcome,
                        "status": exc.status, "detail": exc.detail,
                        "client": h.client_address[0]})  # fmt: skip
            return exc.status, exc.outcome
        if events is None:
            self._count(provider, "duplicate")
            return 200, "ok"
        job = Accepted(provider, events)
        try:
            self.pending.put_nowait(job)
        except queue.Full:
            self._count(provider, "busy")
            return 503, "busy"
        self.wake()
        if not job.done.wait(self.commit_wait) or job.status != 200:
            self._count(provider, "not_committed")
            return 503, "not committed, retry"
        self._count(provider, "stored")
        return 200, "ok"

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            raise Refused(411, "no_length", "chunked bodies are not read; send Content-Length")
        try:
            length = int(h.headers.get("Content-Length") or "")
        except ValueError:
            raise Refused(411, "no_length", "no Content-Length") from None
        if length < 0:
            raise Refused(400, "bad_request", "negative Content-Length")
        if length > self.config.max_body_bytes:
            raise Refused(413, "too_large", f"{length} bytes > max_body_bytes "
                                            f"{self.config.max_body_bytes}")  # fmt: skip
        body = h.rfile.read(length)
        if len(body) != length:
            raise Refused(400, "bad_request", "body shorter than Content-Length")
        return body


_classify: Any = None  # the classifier with its answers, kept from one commit to the next


def commit(store: Store, jobs: list[Accepted], *, metrics: Metrics) -> None:
    """Decode and store the events of ``jobs`` in one transaction (the watcher's window), then
    release their requests: 200 if committed; on an exception each gets 503 and it propagates."""
    global _classify
    from mtalens.pipeline.bounces import default_classifier
    from mtalens.pipeline.events import EventsResult, _Classify, _write_batch, decode_frames

    try:
        decoded = [d for j in jobs
                   for d in decode_frames(f"webhook:{j.provider}", j.body, provider=j.provider)]  # fmt: skip
        result = EventsResult()
        classifier = default_classifier()
        if _classify is None or _classify.classifier is not classifier:
            _classify = _Classify(classifier)
        _write_batch(store, decoded, _classify, datetime.now(UTC), result)
    except BaseException:
        for j in jobs:
            j.status = 503
            j.done.set()
        raise
    metrics.inc("mtalens_webhook_events_total", "Webhook events stored, by outcome.",
                result.stored, outcome="stored")  # fmt: skip
    metrics.inc("mtalens_webhook_events_total", "Webhook events stored, by outcome.",
                result.duplicates, outcome="duplicate")  # fmt: skip
    metrics.inc("mtalens_webhook_events_total", "Webhook events stored, by outcome.",
                result.quarantined, outcome="quarantined")  # fmt: skip
    for j in jobs:
        j.status = 200
        j.done.set()


def take(pending: queue.Queue[Accepted]) -> list[Accepted]:
    out: list[Accepted] = []
    with contextlib.suppress(queue.Empty):
        while True:
            out.append(pending.get_nowait())
    return out
