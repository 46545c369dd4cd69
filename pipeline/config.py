"""The ``mtalens.toml`` loader.

The file is optional: every setting has its default here, in code. Each ``[section]`` maps onto
one frozen dataclass (``SuppressionsConfig`` for ``[suppressions]``); to add a section, add a
dataclass and one field of ``Config``. Unknown sections or keys and values of the wrong type are
refused at start-up (fail fast), with the file and key named.

Lookup order: ``--config PATH``, then ``$MTALENS_CONFIG``, then ``./mtalens.toml`` if it exists.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from mtalens.parsers.errors import ParseError
from mtalens.parsers.postfix import parse_time_value
from mtalens.pipeline.exitcodes import InputError

DEFAULT_CONFIG: Final = "mtalens.toml"


class ConfigError(InputError, ValueError):
    """The configuration file is unreadable or says something we do not understand."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SuppressionsConfig:
    """``[suppressions]``: the policy parameters (pipeline/suppressions.py explains the policy).

    Soft failures: 3 failing UTC days within 30 days, with no delivery in between, suppress for
    30 days. One bad day (a full mailbox over a weekend, a burst of retries) is not enough;
    three separate days in a month is a mailbox that stays broken beyond Postfix's own 5-day
    queue lifetime (postconf(5) maximal_queue_lifetime), the "third soft bounce" rule that list
    software uses (GNU Mailman counts bounces once per day; Keila marks a contact unreachable at
    its third soft bounce). The suppression then lapses so that a mailbox that recovered
    (emptied, re-enabled) is tried again; one more failing day soon re-suppresses it.
    Hard failures and complaints are permanent unless removed (``hard_expiry_days = 0``), as in
    Amazon SES's account-level suppression list.
    """

    soft_threshold: int = 3
    soft_window_days: int = 30
    soft_expiry_days: int = 30
    hard_expiry_days: int = 0  # 0: never
    # pipeline/classify.py HARD_REASONS plus notaccept; only permanent (5xx) failures count
    hard_reasons: tuple[str, ...] = ("userunknown", "hostunknown", "hasmoved", "notaccept")
    # About the sender, the message or our own setup, not the recipient's address: the issue's
    # list, plus the envelope sender refused (rejected), relaying refused (norelaying) and the
    # message's own size or content (mesgtoobig, exceedlimit, contenterror, virusdetected,
    # notcompliantrfc), TLS policy (securityerror, failedstarttls).
    sender_side_reasons: tuple[str, ...] = (
        "blocked", "badreputation", "authfailure", "requireptr", "spamdetected",
        "policyviolation", "toomanyconn", "speeding", "rejected", "norelaying",
        "mesgtoobig", "exceedlimit", "contenterror", "virusdetected", "notcompliantrfc",
        "securityerror", "failedstarttls",
    )  # fmt: skip
    # networkerror on our side: local socket errors (ENETUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT
    # texts of strerror(3)), as Postfix's smtp(8) logs them after "connect to HOST:"
    local_network_phrases: tuple[str, ...] = (
        "network is unreachable",
        "cannot assign requested address",
        "address family not supported",
    )

    def __post_init__(self) -> None:
        for name in ("soft_threshold", "soft_window_days", "soft_expiry_days"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[suppressions] {name} must be at least 1")
        if self.hard_expiry_days < 0:
            raise ConfigError("[suppressions] hard_expiry_days must be 0 (never) or more")


@dataclass(frozen=True, slots=True, kw_only=True)
class PostfixConfig:
    """``[postfix]``: settings of the Postfix whose logs are read, in postconf(5) syntax.

    ``maximal_queue_lifetime``: how long Postfix keeps retrying a message (postconf(5), default
    5d). Ingest keeps a message open this long plus a margin (pipeline/correlate.py
    ``stale_horizon``): a message logged again after a longer silence is counted as a new one.
    Where ``bounce_queue_lifetime`` is set higher, give the larger of the two."""

    maximal_queue_lifetime: str = "5d"

    def __post_init__(self) -> None:
        _ = self.queue_lifetime  # a bad value fails at start-up

    @property
    def queue_lifetime(self) -> timedelta:
        try:
            return parse_time_value(self.maximal_queue_lifetime)
        except ParseError as exc:
            raise ConfigError(f"[postfix] maximal_queue_lifetime: {exc.detail}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapConfig:
    """``[imap]``: how ``mtalens bounces ingest imaps://...`` logs in (pipeline/imap.py).

    ``password`` (refused unless the file is mode 0600 or stricter, like ssh refuses a readable
    private key), or ``password_file`` (the same rule for that file); ``ca_file``: PEM CA
    certificates to verify the server with instead of the system's."""

    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhooksConfig:
    """``[webhooks]``: the sending platforms' webhook receiver of ``watch`` (pipeline/webhooks.py,
    which says how each provider is authenticated). ``port`` (or ``watch --webhook-port``)
    turns it on; a provider without its credentials here is refused (404). The secrets
    (``mailgun_signing_key``, ``*_password``, ``mandrill_key``) are refused unless the file is
    mode 0600."""

    port: int | None = None
    host: str = "127.0.0.1"
    max_body_bytes: int = 10_000_000
    max_age_seconds: int = 900  # a signed timestamp older than this is refused as stale
    amazonses_topics: tuple[str, ...] = ()  # TopicArns accepted
    amazonses_certificates: str | None = None  # directory of pinned SNS signing certificates
    amazonses_fetch_certificates: bool = False  # or fetch them from SigningCertURL (https, SNS)
    amazonses_confirm: bool = False  # GET the SubscribeURL of a verified confirmation
    sendgrid_public_key: str | None = None  # base64 DER, as SendGrid shows it
    mailgun_signing_key: str | None = field(default=None, repr=False)
    postmark_username: str | None = None
    postmark_password: str | None = field(default=None, repr=False)
    sparkpost_username: str | None = None
    sparkpost_password: str | None = field(default=None, repr=False)
    mandrill_key: str | None = field(default=None, repr=False)
    mandrill_url: str | None = None  # the webhook URL as configured at Mandrill (it is signed)
    postal_public_key: str | None = None  # PEM or base64 DER

    SECRETS = ("mailgun_signing_key", "postmark_password", "sparkpost_password", "mandrill_key")

    def __post_init__(self) -> None:
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ConfigError(f"[webhooks] port {self.port} is not a TCP port")
        if self.max_body_bytes < 1 or self.max_age_seconds < 1:
            raise ConfigError("[webhooks] max_body_bytes and max_age_seconds must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: Path | None = None
    suppressions: SuppressionsConfig = field(default_factory=SuppressionsConfig)
    postfix: PostfixConfig = field(default_factory=PostfixConfig)
    imap: ImapConfig = field(default_factory=ImapConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)

    def queue_lifetime(self, option: str | None = None) -> timedelta:
        """``option`` (``mtalens ingest --queue-lifetime``, Postfix time syntax) if given, else
        ``[postfix] maximal_queue_lifetime``, else Postfix's default 5d. Raises ConfigError."""
        if option is None:
            return self.postfix.queue_lifetime
        try:
            return parse_time_value(option)
        except ParseError as exc:
            raise ConfigError(f"--queue-lifetime: {exc.detail}") from exc


# sections of the same file that another loader reads (pipeline/watch_config.py), so a single
# mtalens.toml serves every command
OTHER_SECTIONS: Final = frozenset({"watch", "alerts", "checks"})


def queue_lifetime(option: str | None, config: str | os.PathLike[str] | None = None) -> timedelta:
    """The queue lifetime for ingest (see Config.queue_lifetime) from the config file."""
    return load_config(config).queue_lifetime(option)


def resolve_config_path(path: str | os.PathLike[str] | None) -> Path | None:
    if path:
        return Path(path)
    env = os.environ.get("MTALENS_CONFIG")
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG)
    return default if default.exists() else None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the file (if any) over the defaults; raises ConfigError naming the bad key."""
    resolved = resolve_config_path(path)
    if resolved is None:
        return Config()
    try:
        data = tomllib.loads(resolved.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{resolved}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{resolved}: not valid TOML: {exc}") from exc
    imap = data.get("imap")
    if isinstance(imap, Mapping) and imap.get("password") is not None:
        refuse_readable_by_others(resolved, what="[imap] password")
    hooks = data.get("webhooks")
    if isinstance(hooks, Mapping):
        for key in WebhooksConfig.SECRETS:
            if hooks.get(key) is not None:
                refuse_readable_by_others(resolved, what=f"[webhooks] {key}")
    return config_from_mapping(data, source=str(resolved), path=resolved)


def refuse_readable_by_others(path: Path, *, what: str) -> None:
    """A file holding a secret must be mode 0600 or stricter (no group or other bits)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(f"{path}: holds {what} but is mode {mode & 0o777:04o}; chmod 600 it")


def config_from_mapping(
    data: Mapping[str, Any], *, source: str = "config", path: Path | None = None
) -> Config:
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for name, table in data.items():
        if name in OTHER_SECTIONS:
            continue
        if name == "path" or name not in hints:
            raise ConfigError(f"{source}: unknown section [{name}]")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _build(hints[name], table, f"{source}: [{name}]")
    return Config(path=path, **sections)


def _build(cls: type[Any], table: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{where} unknown key {key!r} (known: {known})")
        kwargs[key] = _coerce(hints[key], value, f"{where} {key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list")
        return tuple(_coerce(item, v, where) for v in value)
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(hint):
            try:
                return _coerce(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} has the wrong type")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where} must be empty")
        return None
    # bool is an int in Python: refuse `true` where a number is meant
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {hint.__name__}, not {type(value).__name__}")
    return value
