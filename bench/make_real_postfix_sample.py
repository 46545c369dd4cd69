"""Produce golden input from a real Postfix: run the lab once, keep its log and DSNs.

Runs tests/lab (Debian's Postfix 3.7 on loopback + the fake MX) with one message per fake-MX
reply kind, a two-recipient message with mixed outcomes, a NOQUEUE reject at RCPT and messages
carrying a client-supplied Message-ID, waits until every message is final (deferred ones
expire), then writes:

* ``sample_logs/postfix/real-postfix-3.7.log``: the maillog, anonymised: the machine's hostname
  becomes ``mx1.example.net``, the lab's temp paths become Debian's standard paths
  (``/etc/postfix``, ``/var/spool/postfix``, ...), the fake MX's random port becomes 25. Every
  line keeps its shape; pids, queue ids and timestamps are the real ones.
* ``sample_logs/bounces/postfix-real/NN-<kind>-<action>.eml``: each DSN as delivered to the
  Maildir (same anonymisation), named after the message's place in ``MESSAGES``, its recipient kind and the RFC 3464 Action
  (stable across runs).

Needs root and Debian's postfix package. Usage: ``.venv/bin/python bench/make_real_postfix_sample.py``
(about a minute).
"""

from __future__ import annotations

import argparse
import email
import email.message
import email.policy
import re
import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lab.fake_mx import FakeMX  # noqa: E402 (the repository is put on sys.path just above)
from tests.lab.postfix_lab import PostfixLab  # noqa: E402 (the repository is put on sys.path just above)

SENDER = "sender@example.net"
# (recipients, extra headers) per message; local parts select the fake MX reply.
MESSAGES: tuple[tuple[tuple[str, ...], dict[str, str]], ...] = (
    (("ok@example.com",), {"Message-ID": "<lab-ok.1@client.example.net>"}),
    (("unknown@example.com",), {"Message-ID": "<lab-unknown.1@client.example.net>"}),
    (("full@example.com",), {}),
    (("listed@example.org",), {}),
    (("bigdata@example.org",), {}),
    (("defer@example.com",), {}),
    (("busy@example.org",), {}),
    (
        ("ok2@example.org", "unknown2@example.org"),
        {"Message-ID": "<lab-mixed.1@client.example.net>"},
    ),
)
REJECTED = "reject@example.net"  # refused by the lab's check_recipient_access: NOQUEUE line


def anonymiser(lab: PostfixLab, mx_port: int) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, replacement) pairs, applied in order; paths longest first."""
    paths = {
        str(lab.log_path): "/var/log/mail.log",
        str(lab.config_dir): "/etc/postfix",
        str(lab.queue_dir): "/var/spool/postfix",
        str(lab.data_dir): "/var/lib/postfix",
        str(lab.root): "/var/lib/postfix-lab",
    }
    rules = [
        (re.compile(re.escape(p)), new)
        for p, new in sorted(paths.items(), key=lambda kv: -len(kv[0]))
    ]
    rules.append((re.compile(rf"\]:{mx_port}\b"), "]:25"))
    host = socket.gethostname()
    if host and host not in {"mx1", "mx1.example.net", "localhost"}:
        rules.append((re.compile(rf"(?<![\w.-]){re.escape(host)}(?![\w-])"), "mx1.example.net"))
    return rules


def anonymise(text: str, rules: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


def dsn_name(raw: bytes, kinds: dict[str, tuple[int, str]]) -> str:
    """``NN-<kind>-<action>.eml``; NN is the message's place in MESSAGES, so names are stable."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    qid, action = "unknown", "unknown"
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            groups = [g for g in part.get_payload() if isinstance(g, email.message.Message)]
            qid = str(groups[0]["X-Postfix-Queue-ID"])
            action = str(groups[1]["Action"])
    index, kind = kinds.get(qid, (99, "other"))
    return f"{index:02d}-{kind}-{action}.eml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "sample_logs", help="sample_logs dir")
    args = parser.parse_args()
    log_out: Path = args.out / "postfix" / "real-postfix-3.7.log"
    eml_dir: Path = args.out / "bounces" / "postfix-real"

    with tempfile.TemporaryDirectory(prefix="mtalens-lab-") as tmp:
        with FakeMX() as mx, PostfixLab(Path(tmp), mx_port=mx.port) as lab:
            kinds: dict[str, tuple[int, str]] = {}
            expected: list[str] = []
            for index, (rcpts, headers) in enumerate(MESSAGES, start=1):
                kind = re.sub(r"\d+$", "", rcpts[0].split("@")[0])
                if len(rcpts) > 1:
                    kind = "mixed"
                result = lab.send(SENDER, list(rcpts), f"lab {kind}", f"kind {kind}\n", headers)
                assert result.queue_id is not None, result
                kinds[result.queue_id] = (index, kind)
                if kind in ("defer", "busy"):
                    expected.append(rf": {result.queue_id}: from=<[^>]*>, status=expired")
            refused = lab.send(SENDER, [REJECTED], "lab reject", "refused at RCPT\n")
            assert refused.queue_id is None and REJECTED in refused.refused, refused
            lab.wait_until_idle(timeout=240, expect=expected)
            raw_log = lab.log_text()
            dsns = lab.maildir_messages()
        rules = anonymiser(lab, mx.port)

    log_out.parent.mkdir(parents=True, exist_ok=True)
    log_out.write_text(anonymise(raw_log, rules), encoding="utf-8")
    eml_dir.mkdir(parents=True, exist_ok=True)
    for old in eml_dir.glob("*.eml"):
        old.unlink()
    for raw in dsns:
        text = anonymise(raw.decode("utf-8", "surrogateescape"), rules)
        path = eml_dir / dsn_name(raw, kinds)
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    print(f"{log_out}: {raw_log.count(chr(10))} lines; {eml_dir}: {len(dsns)} DSNs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
