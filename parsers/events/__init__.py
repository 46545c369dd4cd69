"""Sending-platform events: what Amazon SES, SendGrid, Mailgun, Postmark, SparkPost, Mandrill
and Postal report about the mail they sent, as JSON, read into ``ProviderEvent`` records.

Pure: ``framing.split_events`` cuts a file's bytes into events (gzip, JSON, arrays, JSON lines,
SNS envelopes); ``decode`` reads one event. Each provider is one module with ``NAME``,
``sniff(event) -> bool`` (is this event's shape the provider's?) and
``parse(event) -> ProviderEvent | Ignored`` (raises ``ParseError`` for "mine but malformed"), in
the ordered ``PROVIDERS`` tuple: the most distinctive shapes first, SendGrid's flat records last.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from mtalens.parsers.errors import ParseError
from mtalens.parsers.events import (
    amazonses,
    mailgun,
    mandrill,
    postal,
    postmark,
    sendgrid,
    sparkpost,
)
from mtalens.parsers.events.framing import Frame, gunzip, split_events
from mtalens.parsers.events.records import EventKind, EventRecipient, Ignored, ProviderEvent


class Provider(Protocol):
    NAME: Final[str]  # type: ignore[misc]

    def sniff(self, event: Mapping[str, Any]) -> bool: ...
    def parse(self, event: Mapping[str, Any]) -> ProviderEvent | Ignored: ...


PROVIDERS: Final[tuple[Provider, ...]] = (
    amazonses,
    sparkpost,
    mailgun,
    postal,
    mandrill,
    postmark,
    sendgrid,
)
BY_NAME: Final[Mapping[str, Provider]] = {p.NAME: p for p in PROVIDERS}


def detect(event: Mapping[str, Any], prefer: Provider | None = None) -> Provider | None:
    """The first provider whose sniffer recognises the event's shape. ``prefer`` (the provider
    of the previous event of the same file: a file holds one provider's events) is asked
    first; the sniffers' shapes do not overlap, so this only saves time."""
    if prefer is not None and prefer.sniff(event):
        return prefer
    for provider in PROVIDERS:
        if provider.sniff(event):
            return provider
    return None


def decode(
    event: Mapping[str, Any], provider: str | None = None, *, prefer: Provider | None = None
) -> ProviderEvent | Ignored:
    """Read one event, of ``provider`` (a ``NAME``) or of the provider its shape names (see
    ``detect`` for ``prefer``). Raises ``ParseError``: ``unknown-provider``, or the provider's
    reason."""
    if provider is not None:
        p = BY_NAME.get(provider)
        if p is None:
            raise ValueError(f"unknown provider {provider!r}")
        if not p.sniff(event):
            raise ParseError("not-" + provider, f"the event does not have {provider}'s shape")
    else:
        p = detect(event, prefer)
        if p is None:
            keys = ", ".join(sorted(str(k)[:32] for k in event)[:8])
            raise ParseError("unknown-provider", f"no provider has this shape (keys: {keys})")
    return p.parse(event)


__all__ = [
    "BY_NAME",
    "PROVIDERS",
    "EventKind",
    "EventRecipient",
    "Frame",
    "Ignored",
    "ParseError",
    "Provider",
    "ProviderEvent",
    "decode",
    "detect",
    "gunzip",
    "split_events",
]
