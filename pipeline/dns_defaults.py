"""Defaults of the DNS checks, apart from ``mtalens.pipeline.dns`` so that the CLI can show them
in ``--help`` without importing dnspython (start-up time, issue 10)."""

from __future__ import annotations

from typing import Final

DEFAULT_TIMEOUT: Final = 3.0
"""Seconds one lookup may take, retries to every nameserver included (dnspython's lifetime)."""

# RFC 5782 has no registry of lists; these are widely used public IPv4 lists. Some need an
# account or refuse queries from public resolvers (Spamhaus answers 127.255.255.254, reported as
# a query error, see mtalens.pipeline.dns.SPAMHAUS_ERRORS). Barracuda needs a free registration
# of the resolver's IP.
DEFAULT_BLOCKLISTS: Final[tuple[str, ...]] = (
    "zen.spamhaus.org",  # https://www.spamhaus.org/faqs/dnsbl-usage/
    "b.barracudacentral.org",  # https://www.barracudacentral.org/rbl/how-to-use
    "bl.spamcop.net",  # https://www.spamcop.net/fom-serve/cache/291.html
    "psbl.surriel.com",  # https://psbl.org/
    "bl.mailspike.net",  # https://mailspike.org/usage.html
)
