"""The webhook receiver of `watch` (pipeline/webhooks.py): each provider authenticated its
documented way, with keys and certificates made here; forged, unsigned, stale and oversized
requests refused and never stored; stored ones answered only after their commit, once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from mtalens.pipeline.config import WebhooksConfig
from mtalens.pipeline.store import Store
from mtalens.pipeline.webhooks import Refused, Request, Verifier
from tests.lab.dns_server import free_port
from tests.test_events import MD_EVENTS, MG_EVENTS, PM_EVENTS, PO_EVENTS, SES_BOUNCE, SG_EVENTS
from tests.test_watch_peers import CLI

NOW = 1772445600.0  # the samples' time
MG_KEY = "key-mailgun-signing-0123456789"
MD_KEY = "mandrill-webhook-key"
MD_URL = "https://hooks.example.net/events/mandrill"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("keys")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(rsa_key.public_key()).serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2036, 1, 1, tzinfo=UTC))
        .sign(rsa_key, hashes.SHA256())
    )  # fmt: skip
    certs = d / "sns-certs"
    certs.mkdir()
    (certs / "SimpleNotificationService-test.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
    )
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return {
        "ec": ec_key, "rsa": rsa_key, "certs": str(certs),
        "sendgrid_public": base64.b64encode(ec_key.public_key().public_bytes(der, spki)).decode(),
        "postal_public": base64.b64encode(rsa_key.public_key().public_bytes(der, spki)).decode(),
    }  # fmt: skip


def config(keys: dict[str, Any], **kw: Any) -> WebhooksConfig:
    values: dict[str, Any] = dict(
        amazonses_topics=(TOPIC,), amazonses_certificates=keys["certs"],
        sendgrid_public_key=keys["sendgrid_public"], mailgun_signing_key=MG_KEY,
        postmark_username="pm", postmark_password="pm-secret", sparkpost_username="sp",
        sparkpost_password="sp-secret", mandrill_key=MD_KEY, mandrill_url=MD_URL,
        postal_public_key=keys["postal_public"],
    )  # fmt: skip
    values.update(kw)
    return WebhooksConfig(**values)


# -- signing as each provider does ----------------------------------------------------------------


def mailgun_body(event: dict[str, Any], *, ts: float = NOW, token: str = "a" * 50,
                 key: str = MG_KEY) -> bytes:  # fmt: skip
    sig = hmac.new(key.encode(), (str(int(ts)) + token).encode(), hashlib.sha256).hexdigest()
    signed = {**event, "signature": {"timestamp": str(int(ts)), "token": token, "signature": sig}}
    return json.dumps(signed).encode()


def sendgrid_headers(keys: dict[str, Any], body: bytes, ts: float = NOW) -> dict[str, str]:
    stamp = str(int(ts))
    sig = keys["ec"].sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"x-twilio-email-event-webhook-signature": base64.b64encode(sig).decode(),
            "x-twilio-email-event-webhook-timestamp": stamp}  # fmt: skip


def sns_body(keys: dict[str, Any], event: dict[str, Any], *, mid: str = "sns-1",
             ts: float = NOW, kind: str = "Notification", version: str = "2") -> bytes:  # fmt: skip
    msg: dict[str, Any] = {
        "Type": kind, "MessageId": mid, "TopicArn": TOPIC, "Message": json.dumps(event),
        "Timestamp": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": version, "SigningCertURL": CERT_URL,
    }  # fmt: skip
    if kind == "Notification":
        order = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    else:
        msg["Token"] = "tok"
        msg["SubscribeURL"] = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
        order = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    text = "".join(f"{k}\n{msg[k]}\n" for k in order if k in msg)
    algo = hashes.SHA256() if version == "2" else hashes.SHA1()
    msg["Signature"] = base64.b64encode(
        keys["rsa"].sign(text.encode(), padding.PKCS1v15(), algo)
    ).decode()
    return json.dumps(msg).encode()


def mandrill_request(events: list[dict[str, Any]], key: str = MD_KEY) -> tuple[bytes, str]:
    value = json.dumps(events)
    sig = base64.b64encode(
        hmac.new(key.encode(), (MD_URL + "mandrill_events" + value).encode(), hashlib.sha1).digest()
    ).decode()
    return urllib.parse.urlencode({"mandrill_events": value}).encode(), sig


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def postal_headers(keys: dict[str, Any], body: bytes) -> dict[str, str]:
    sig = keys["rsa"].sign(body, padding.PKCS1v15(), hashes.SHA256())
    return {"x-postal-signature-256": base64.b64encode(sig).decode()}


# -- the verifier ---------------------------------------------------------------------------------


def verify(v: Verifier, provider: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return v.check(Request(provider, f"/events/{provider}", headers or {}, body))


def refused(v: Verifier, provider: str, body: bytes, headers: dict[str, str] | None = None) -> str:
    with pytest.raises(Refused) as info:
        verify(v, provider, body, headers)
    return info.value.outcome


def test_each_provider_signed_is_accepted_and_tampered_is_refused(keys: dict[str, Any]) -> None:
    v = Verifier(config(keys), clock=lambda: NOW + 60)
    mg = mailgun_body(MG_EVENTS[0])
    assert verify(v, "mailgun", mg) == mg
    assert verify(v, "mailgun", mg) is None  # the same token again: nothing to store twice
    forged = mg.replace(b"jon@dest.example", b"joe@dest.example")
    assert refused(v, "mailgun", mailgun_body(MG_EVENTS[1], key="guessed")) == "bad_signature"
    assert refused(v, "mailgun", json.dumps(MG_EVENTS[1]).encode()) == "bad_signature"  # zeros
    # Mailgun signs timestamp + token, not the body: a changed body with a used token is a
    # replay, and stores nothing
    assert verify(v, "mailgun", forged) is None
    sg = json.dumps(SG_EVENTS).encode()
    assert verify(v, "sendgrid", sg, sendgrid_headers(keys, sg)) == sg
    assert refused(v, "sendgrid", sg + b" ", sendgrid_headers(keys, sg)) == "bad_signature"
    assert refused(v, "sendgrid", sg) == "unsigned"
    ses = sns_body(keys, SES_BOUNCE)
    assert verify(v, "amazonses", ses) == ses
    assert verify(v, "amazonses", ses) is None  # MessageId seen
    assert verify(v, "amazonses", sns_body(keys, SES_BOUNCE, mid="sns-v1", version="1"))
    tampered = json.loads(sns_body(keys, SES_BOUNCE, mid="sns-2"))
    tampered["Message"] = tampered["Message"].replace("ann@", "amy@")
    assert refused(v, "amazonses", json.dumps(tampered).encode()) == "bad_signature"
    elsewhere = json.loads(sns_body(keys, SES_BOUNCE, mid="sns-3"))
    elsewhere["SigningCertURL"] = "https://attacker.example/SimpleNotificationService-test.pem"
    assert refused(v, "amazonses", json.dumps(elsewhere).encode()) == "bad_signature"
    other_topic = json.loads(sns_body(keys, SES_BOUNCE, mid="sns-4"))
    other_topic["TopicArn"] = "arn:aws:sns:eu-west-1:999:other"
    assert refused(v, "amazonses", json.dumps(other_topic).encode()) == "bad_signature"
    # a verified subscription confirmation is logged, stores nothing
    assert verify(v, "amazonses", sns_body(keys, {}, kind="SubscriptionConfirmation")) is None
    pm = json.dumps(PM_EVENTS[0]).encode()
    assert verify(v, "postmark", pm, basic("pm", "pm-secret")) == pm
    assert refused(v, "postmark", pm, basic("pm", "wrong")) == "bad_signature"
    assert refused(v, "sparkpost", pm) == "unsigned"
    sp = json.dumps([{"msys": {"message_event": {"type": "bounce", "event_id": "sp-x"}}}]).encode()
    assert verify(v, "sparkpost", sp, basic("sp", "sp-secret")) == sp
    assert refused(v, "sparkpost", sp, basic("pm", "pm-secret")) == "bad_signature"
    form, sig = mandrill_request(MD_EVENTS[:2])
    assert json.loads(verify(v, "mandrill", form, {"x-mandrill-signature": sig})) == MD_EVENTS[:2]
    other_form, _ = mandrill_request(MD_EVENTS[2:3])
    assert refused(v, "mandrill", other_form, {"x-mandrill-signature": sig}) == "bad_signature"
    po = json.dumps(PO_EVENTS[0]).encode()
    assert verify(v, "postal", po, postal_headers(keys, po)) == po
    assert refused(v, "postal", po + b"\n", postal_headers(keys, po)) == "bad_signature"


def test_stale_signatures_and_unconfigured_providers_are_refused(keys: dict[str, Any]) -> None:
    late = Verifier(config(keys), clock=lambda: NOW + 3600)  # an hour after signing
    assert refused(late, "mailgun", mailgun_body(MG_EVENTS[0], token="b" * 50)) == "stale"
    sg = json.dumps(SG_EVENTS[:1]).encode()
    assert refused(late, "sendgrid", sg, sendgrid_headers(keys, sg)) == "stale"
    assert refused(late, "amazonses", sns_body(keys, SES_BOUNCE, mid="old")) == "stale"
    bare = Verifier(WebhooksConfig(mailgun_signing_key=MG_KEY), clock=lambda: NOW)
    assert refused(bare, "sendgrid", sg, sendgrid_headers(keys, sg)) == "unconfigured"


# -- the daemon, end to end -----------------------------------------------------------------------


def post(port: int, provider: str, body: bytes, headers: dict[str, str] | None = None,
         *, length: int | None = None) -> int:  # fmt: skip
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.putrequest("POST", f"/events/{provider}")
        c.putheader("Content-Type", "application/json")
        c.putheader("Content-Length", str(len(body) if length is None else length))
        for k, val in (headers or {}).items():
            c.putheader(k, val)
        c.endheaders()
        c.send(body)
        return c.getresponse().status
    finally:
        c.close()


@pytest.fixture
def daemon(tmp_path: Path, keys: dict[str, Any]) -> Iterator[tuple[int, Path, Path]]:
    conf = tmp_path / "mtalens.toml"
    conf.write_text(
        "[webhooks]\n"
        f'amazonses_topics = ["{TOPIC}"]\namazonses_certificates = "{keys["certs"]}"\n'
        f'sendgrid_public_key = "{keys["sendgrid_public"]}"\nmailgun_signing_key = "{MG_KEY}"\n'
        'postmark_username = "pm"\npostmark_password = "pm-secret"\n'
        f'mandrill_key = "{MD_KEY}"\nmandrill_url = "{MD_URL}"\n'
        f'postal_public_key = "{keys["postal_public"]}"\n'
        "max_body_bytes = 200000\nmax_age_seconds = 86400000\n"  # the samples are from March
    )
    conf.chmod(0o600)
    log, db, err = tmp_path / "mail.log", tmp_path / "w.duckdb", tmp_path / "watch.err"
    log.write_text("")
    port = free_port()
    with open(err, "wb") as fh:
        proc = subprocess.Popen(
            [*CLI, "watch", "--config", str(conf), "--db", str(db), "--log", str(log),
             "--timezone", "UTC", "--webhook-port", str(port), "--commit-interval", "0.1",
             "--poll-interval", "0.2"],
            stdout=subprocess.DEVNULL, stderr=fh,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while '"webhooks listening"' not in err.read_text():
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.1)
        yield port, db, err
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, err.read_text()


def test_the_daemon_stores_authenticated_events_once_and_refuses_the_rest(
    daemon: tuple[int, Path, Path], keys: dict[str, Any]
) -> None:
    port, db, err = daemon
    mg = mailgun_body(MG_EVENTS[0])
    sg = json.dumps(SG_EVENTS).encode()
    form, md_sig = mandrill_request(MD_EVENTS[:2])
    po = json.dumps(PO_EVENTS[0]).encode()
    assert post(port, "mailgun", mg) == 200
    assert post(port, "mailgun", mg) == 200  # a retry: answered, not stored again
    assert post(port, "sendgrid", sg, sendgrid_headers(keys, sg)) == 200
    assert post(port, "sendgrid", sg, sendgrid_headers(keys, sg)) == 200  # duplicate events
    assert post(port, "amazonses", sns_body(keys, SES_BOUNCE)) == 200
    assert (
        post(port, "postmark", json.dumps(PM_EVENTS[0]).encode(), basic("pm", "pm-secret")) == 200
    )
    assert post(port, "mandrill", form, {"x-mandrill-signature": md_sig,
                                         "content-type": "application/x-www-form-urlencoded"}) == 200  # fmt: skip
    assert post(port, "postal", po, postal_headers(keys, po)) == 200
    # refused: forged, unsigned, unconfigured, too large, no length
    forged = json.dumps([{**SG_EVENTS[0], "email": "forged@dest.example", "sg_event_id": "f1"}])
    assert post(port, "sendgrid", forged.encode(), sendgrid_headers(keys, sg)) == 403
    assert post(port, "postmark", json.dumps(PM_EVENTS[1]).encode()) == 401
    assert post(port, "sparkpost", b"[]") == 404
    big = mailgun_body({**MG_EVENTS[1], "pad": "x" * 300_000}, token="c" * 50)
    assert post(port, "mailgun", big) == 413
    assert raw_status(port, b"POST /events/mailgun HTTP/1.1\r\nHost: x\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n") == 411  # fmt: skip
    with Store.open(db, read_only=True) as store:
        rows = store.con.execute(
            "SELECT input_path, count(*) FROM bounce_reports GROUP BY ALL ORDER BY 1"
        ).fetchall()
        forged_rows = store.con.execute(
            "SELECT count(*) FROM bounce_recipients WHERE recipient = 'forged@dest.example'"
        ).fetchone()
        bounced = {r[0] for r in store.con.execute(
            "SELECT recipient FROM bounces").fetchall()}  # fmt: skip
    counts = dict(rows)
    assert counts["webhook:mailgun"] == 1 and counts["webhook:amazonses"] == 1
    assert counts["webhook:sendgrid"] == 7  # 8 events, the open is ignored
    assert counts["webhook:mandrill"] == 2 and counts["webhook:postal"] == 1
    assert counts["webhook:postmark"] == 1
    assert forged_rows == (0,)
    assert {"jon@dest.example", "ann@dest.example", "dan@dest.example", "xia@dest.example",
            "oli@dest.example", "cal@dest.example"} <= bounced  # fmt: skip
    logged = [json.loads(x) for x in err.read_text().splitlines() if x.startswith("{")]
    outcomes = sorted(x["outcome"] for x in logged if x["msg"] == "webhook refused")
    assert outcomes == ["bad_signature", "no_length", "too_large", "unconfigured", "unsigned"]
    assert "mg-secret" not in err.read_text() and MG_KEY not in err.read_text()


def raw_status(port: int, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.sendall(request)
        head = c.recv(100)
    return int(head.split()[1])


def test_secrets_in_a_readable_config_are_refused(tmp_path: Path) -> None:
    conf = tmp_path / "mtalens.toml"
    conf.write_text(f'[webhooks]\nmailgun_signing_key = "{MG_KEY}"\n')
    conf.chmod(0o644)
    run = subprocess.run([*CLI, "watch", "--config", str(conf), "--db", str(tmp_path / "x.db"),
                          "--log", str(conf), "--webhook-port", "0", "--once"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2
    assert "mailgun_signing_key but is mode 0644; chmod 600 it" in run.stderr
    assert MG_KEY not in run.stderr
