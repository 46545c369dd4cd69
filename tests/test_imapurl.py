"""IMAP URLs and mailbox names (parsers/imapurl.py), the UID sets and password sources of
pipeline/imap.py: the pure parts, no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtalens.parsers.errors import ParseError
from mtalens.parsers.imapurl import (
    is_imap_url,
    mailbox_wire_name,
    parse_imap_url,
    quoted,
    redacted,
)
from mtalens.pipeline import imap
from mtalens.pipeline.config import ConfigError, ImapConfig, load_config
from mtalens.pipeline.exitcodes import InputError


@pytest.mark.parametrize(
    ("text", "scheme", "user", "host", "port", "mailbox"),
    [
        ("imaps://bounce@mail.example.org/INBOX", "imaps", "bounce", "mail.example.org", 993,
         "INBOX"),
        ("imap://bounce@mail.example.org/inbox", "imap", "bounce", "mail.example.org", 143,
         "INBOX"),
        ("IMAPS://Bounce@Mail.Example.ORG:10993/", "imaps", "Bounce", "mail.example.org", 10993,
         "INBOX"),
        ("imaps://b%40example.org@[::1]:993/Bounce%20Reports/2024", "imaps", "b@example.org",
         "::1", 993, "Bounce Reports/2024"),
        ("imaps://u@h/Entw%C3%BCrfe", "imaps", "u", "h", 993, "Entwürfe"),
    ],
)  # fmt: skip
def test_urls(text: str, scheme: str, user: str, host: str, port: int, mailbox: str) -> None:
    url = parse_imap_url(text)
    assert (url.scheme, url.user, url.host, url.port, url.mailbox) == (
        scheme, user, host, port, mailbox,
    )  # fmt: skip
    assert is_imap_url(text)
    # the canonical form parses back to the same URL
    assert parse_imap_url(url.display) == url


def test_display_and_message_source() -> None:
    url = parse_imap_url("imaps://b%40example.org@[::1]/Bounce%20Reports")
    assert url.display == "imaps://b%40example.org@[::1]:993/Bounce%20Reports"
    assert url.message_source(77, 12) == f"{url.display};UIDVALIDITY=77/;UID=12"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("imaps://bounce:hunter2@mail.example.org/INBOX", "password in the URL"),
        ("imaps://mail.example.org/INBOX", "no user"),
        ("imaps://@mail.example.org/INBOX", "user is empty"),
        ("imaps://u;AUTH=GSSAPI@mail.example.org/INBOX", ";AUTH="),
        ("imaps://u@mail.example.org/INBOX;UIDVALIDITY=3", "RFC 5092 parameters"),
        ("imaps://u@mail.example.org/INBOX?SUBJECT%20x", "searches"),
        ("imaps://u@mail.example.org/INBOX#x", "fragment"),
        ("imaps://u@mail.example.org:99999/INBOX", "not a URL"),
        ("imaps://u@mail.example.org:0/INBOX", "port 0"),
        ("imaps://u@/INBOX", "no host"),
        ("imaps://u@h/a%0Ab", "control characters"),
        ("imaps://u@h/%FF", "not percent-encoded UTF-8"),
        ("pop3://u@h/INBOX", "scheme"),
    ],
)
def test_refused_urls(text: str, why: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_imap_url(text)
    assert err.value.code == "bad-imap-url"
    assert why in err.value.detail
    assert "hunter2" not in str(err.value)


def test_redacted_and_the_cli_error_hide_a_password() -> None:
    assert redacted("imaps://bounce:hunter2@h/INBOX") == "imaps://bounce:***@h/INBOX"
    assert redacted("imaps://bounce@h/INBOX") == "imaps://bounce@h/INBOX"
    with pytest.raises(InputError) as err:
        imap.parse_url("imaps://bounce:hunter2@h/INBOX")
    assert "hunter2" not in str(err.value) and "bounce:***@h" in str(err.value)


def test_paths_are_not_urls() -> None:
    assert not is_imap_url("/var/mail/imap://x")
    assert not is_imap_url("Maildir")


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", "INBOX"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("Tom & Jerry", "Tom &- Jerry"),
        # RFC 3501 section 5.1.3's own example
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ],
)
def test_modified_utf7(name: str, wire: str) -> None:
    assert mailbox_wire_name(name) == wire


def test_quoted() -> None:
    assert quoted('a "b" \\c') == '"a \\"b\\" \\\\c"'


@pytest.mark.parametrize(
    ("uids", "text"),
    [([1, 2, 3, 7], "1:3,7"), ([5], "5"), ([9, 3, 4, 10], "3:4,9:10"), ([], "")],
)
def test_uid_sets(uids: list[int], text: str) -> None:
    assert imap._uid_set(uids) == text


def _secret(tmp_path: Path, mode: int, text: str = "s3cret\nignored\n") -> str:
    f = tmp_path / "pw"
    f.write_text(text, encoding="utf-8")
    f.chmod(mode)
    return str(f)


def test_password_sources_in_order(tmp_path: Path) -> None:
    none = ImapConfig()
    in_config = ImapConfig(password="from-config")
    env = {imap.PASSWORD_ENV: "from-env"}
    pw_file = _secret(tmp_path, 0o600)
    got = imap.resolve_password(password_file=pw_file, environ=env, config=in_config)
    assert got == "s3cret"
    assert imap.resolve_password(password_file=None, environ=env, config=in_config) == "from-env"
    assert imap.resolve_password(password_file=None, environ={}, config=in_config) == (
        "from-config"
    )
    via_file = ImapConfig(password_file=pw_file)
    assert imap.resolve_password(password_file=None, environ={}, config=via_file) == "s3cret"
    with pytest.raises(InputError, match="needs a password"):
        imap.resolve_password(password_file=None, environ={}, config=none)
    assert "from-config" not in repr(in_config)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_password_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    pw_file = _secret(tmp_path, mode)
    with pytest.raises(InputError, match="chmod 600") as err:
        imap.read_password_file(pw_file)
    assert "s3cret" not in str(err.value)


def test_password_file_empty_or_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        imap.read_password_file(_secret(tmp_path, 0o600, "\nsecond line\n"))
    with pytest.raises(InputError, match="cannot read"):
        imap.read_password_file(str(tmp_path / "missing"))
    assert imap.read_password_file(_secret(tmp_path, 0o400, "crlf\r\n")) == "crlf"


def test_config_with_a_password_must_be_private(tmp_path: Path) -> None:
    conf = tmp_path / "mtalens.toml"
    conf.write_text('[imap]\npassword = "t0p-secret"\n', encoding="utf-8")
    conf.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644") as err:
        load_config(conf)
    assert "t0p-secret" not in str(err.value)
    conf.chmod(0o600)
    assert load_config(conf).imap.password == "t0p-secret"
    # without a password the file may be readable (a CA file is no secret)
    conf.write_text('[imap]\nca_file = "/etc/ssl/ca.pem"\n', encoding="utf-8")
    conf.chmod(0o644)
    assert load_config(conf).imap.ca_file == "/etc/ssl/ca.pem"


def test_ca_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the CA file"):
        imap.tls_context(str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(InputError, match="not a PEM CA"):
        imap.tls_context(str(junk))
    ctx = imap.tls_context(None)
    assert ctx.check_hostname and ctx.verify_mode.name == "CERT_REQUIRED"
