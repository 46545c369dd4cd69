"""Remedies in the words of the MTA whose logs show the problem, where Postfix's do not apply.

The diagnoses' own remedies (pipeline/diagnose.py) name Postfix's parameters (postconf(5),
master.cf, postqueue). For a store whose deliveries in the range were logged by Exim or
Sendmail, :func:`remedy_for` gives the same advice in that MTA's terms, by finding id (``id``, or
``id:subject`` for the findings whose subjects are kinds of one problem). Sources: the Exim
specification (4.96: chapters "The smtp transport", "SMTP authentication", "Retry
configuration", "DKIM, ARC and DMARC", "Access control lists" for ``ratelimit``, "Log files");
Debian's exim4-config README (``dc_smarthost``); Sendmail's cf/README ("SMART_HOST", "authinfo",
"queuegroup", confAUTH_OPTIONS, confDOMAIN_NAME, "STARTTLS": the TLS_Srv access map entries)
and "Installation and Operation Guide" (``Timeout.queuereturn``); fail2ban's shipped filters
(``exim``, ``sendmail-auth``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

_EXIM: Final[Mapping[str, str]] = {
    "blocklisted": "Our sending IP is on the {subject} blocklist. First stop the cause (a "
    "compromised account or web form sending spam: list the queue with `exim -bp` (`exiqsumm` "
    "for a summary by domain) and check the authenticated senders in the main log's A= "
    "fields), then {delisting}. Check the listing with `mtalens dns blocklist <our IP>`. Until "
    "delisted, mail to these destinations can go through a relay with a clean reputation: a "
    "manualroute router with route_list for those domains (on Debian, dc_smarthost in "
    "/etc/exim4/update-exim4.conf.conf).",
    "relay-denied-outbound": "{subject} answers 'Relay access denied': it does not know us as "
    "a client. If it is your provider's smarthost, authenticate to it (a client authenticator "
    "with client_send, and hosts_require_auth and hosts_require_tls on the smtp transport; on "
    "Debian the credentials go in /etc/exim4/passwd.client) or use the host name and port the "
    "provider documents; if the smarthost router points at the wrong host, fix its route_list.",
    "auth-bruteforce": "Block {subject} (fail2ban's exim jail, or a deny in the ACL for "
    "connections, acl_smtp_connect), limit attempts (a ratelimit condition in acl_smtp_auth), "
    "offer AUTH only on the submission ports (auth_advertise_hosts, e.g. only when "
    "$received_port is 587), and check the targeted accounts for weak passwords.",
    "auth-without-tls": "Passwords were sent in clear text. Offer AUTH only after STARTTLS: "
    "auth_advertise_hosts = ${{if eq{{$tls_in_cipher}}{{}}{{}}{{*}}}} (the Exim specification, "
    "chapter 'SMTP authentication'), and have clients use port 587 with STARTTLS or port 465 with "
    "implicit TLS (tls_on_connect_ports, RFC 8314). Change the passwords used in these sessions.",
    "port25-blocked": "Connections to port 25 of many unrelated destinations time out or are "
    "refused while nothing else is wrong with them: the network provider filters outbound port "
    "25 (common on residential lines and cloud hosts). Ask the provider to open it, or send "
    "through a smarthost on the submission port: a manualroute router (route_list = * "
    "smtp.provider.example) to an smtp transport with port = 587, hosts_require_tls = * and "
    "hosts_require_auth = * (RFC 6409).",
    "sender-authentication:DKIM": "Sign outgoing mail with DKIM: Exim signs by itself with "
    "dkim_domain, dkim_selector and dkim_private_key on the smtp transport (the Exim "
    "specification, chapter 'DKIM, ARC and DMARC'), and publish the public key at "
    "<selector>._domainkey.<domain> (RFC 6376); check it with `mtalens dns check DOMAIN -s "
    "SELECTOR`.",
    "throttling:rate-limiting": "Destinations throttle us for volume or reputation. Slow down "
    "per destination: a router and smtp transport of their own for those domains, with fewer "
    "messages per connection (connection_max_messages) and fewer parallel deliveries "
    "(remote_max_parallel), and retry rules that back off (begin retry); warm up new IPs "
    "gradually; check complaint rates and follow the providers' sender guidelines "
    "(https://support.google.com/mail/answer/81126, https://senders.yahooinc.com/best-practices/).",
    "throttling:greylisting": "Greylisting defers the first attempt from an unknown sender (RFC "
    "6647); mail goes through on retry ({delivered_later} already did). Keep the sending IP "
    "stable (interface on the smtp transport) and do not make the first retry interval of the "
    "retry rules shorter than the greylisting delay. Nothing to fix unless delays matter; then "
    "ask the destination to allowlist you.",
    "dns-failures:lookup-failing": "Lookups end in 'try again' (SERVFAIL or timeout). If only "
    "these domains fail, their DNS is broken (check with `mtalens dns check DOMAIN`) and mail "
    "waits in the queue until it works or the retry rules give it up. If many unrelated domains "
    "fail, this server's resolver is the problem: check /etc/resolv.conf.",
    "own-reverse-dns": "Give {names} a PTR record naming this server's host name (set by whoever "
    "owns the IP range: the ISP or hosting provider), and make that name resolve back to the "
    "same IP (an A/AAAA record): forward-confirmed reverse DNS. Use the same name in HELO "
    "(primary_hostname, or helo_data on the smtp transport). Large providers refuse mail "
    "without it (https://support.google.com/mail/answer/81126).",
    "tls-outbound": "For 'TLS is required, but was not offered': hosts_require_tls on the smtp "
    "transport demands TLS that {subject} does not offer; relax it for that host or ask its "
    "operator to enable STARTTLS. For handshake failures: the two sides share no protocol "
    "version or cipher (see the TLS library errors); check tls_require_ciphers on the smtp "
    "transport.",
    "tls-inbound": "Clients fail the TLS handshake with this server: usually old clients (TLS "
    "1.0 only) or scanners. If real correspondents are among the clients, compare "
    "tls_require_ciphers and openssl_options (or gnutls' priority string) in the main "
    "configuration with what they support (the spec's chapter on TLS), and check that "
    "tls_certificate and tls_privatekey are readable by Exim; otherwise nothing to do.",
    "delay-growth:in_queue": "Time waiting in the queue grew: deliveries are deferred and "
    "retried (the retry rules), or the queue runners cannot keep up (queue_run_max, the daemon's "
    "-q interval). Look at `exim -bp` and `exiqsumm`, and at the deferrals in the main log.",
    "delay-growth:transmit": "The delivery attempts themselves take longer (Exim's DT=, the "
    "connection and the transfer together): destinations accept data slowly (tarpitting, rate "
    "limiting), their DNS or TLS is slow, or messages got bigger. Compare the message sizes and "
    "the destinations listed.",
}

_SENDMAIL: Final[Mapping[str, str]] = {
    "blocklisted": "Our sending IP is on the {subject} blocklist. First stop the cause (a "
    "compromised account or web form sending spam: list the queue with `mailq` and check the "
    "AUTH=server lines for who logged in), then {delisting}. Check the listing with `mtalens "
    "dns blocklist <our IP>`. Until delisted, mail to these destinations can go through a relay "
    "with a clean reputation: a mailertable entry for those domains, or "
    "define(`SMART_HOST', `[relay.example]') in sendmail.mc.",
    "relay-denied-outbound": "{subject} answers 'Relay access denied': it does not know us as "
    "a client. If it is your provider's smarthost, authenticate to it (FEATURE(`authinfo') and "
    "an AuthInfo: entry for the host in /etc/mail/authinfo) or use the host name and port the "
    "provider documents; if SMART_HOST points at the wrong host, fix it in sendmail.mc.",
    "auth-bruteforce": "Block {subject} (fail2ban's sendmail-auth jail, or a Connect: REJECT "
    "entry in the access map), limit connection rates (FEATURE(`ratecontrol') and "
    "FEATURE(`conncontrol')), offer AUTH only on the submission port (the M=Ea modifiers of "
    "DAEMON_OPTIONS: AUTH off on port 25), and check the targeted accounts for weak passwords.",
    "auth-without-tls": "Passwords were sent in clear text. Refuse plain-text mechanisms without "
    "TLS: define(`confAUTH_OPTIONS', `A p') in sendmail.mc (p: PLAIN and LOGIN only once a "
    "security layer is active), and have clients use port 587 with STARTTLS or port 465 with "
    "implicit TLS (RFC 8314). Change the passwords used in these sessions.",
    "port25-blocked": "Connections to port 25 of many unrelated destinations time out or are "
    "refused while nothing else is wrong with them: the network provider filters outbound port "
    "25 (common on residential lines and cloud hosts). Ask the provider to open it, or send "
    "through a smarthost on the submission port: define(`SMART_HOST', "
    "`[smtp.provider.example]') with define(`RELAY_MAILER_ARGS', `TCP $h 587') and "
    "FEATURE(`authinfo') credentials (RFC 6409).",
    "sender-authentication:DKIM": "Sign outgoing mail with DKIM (the OpenDKIM milter: "
    "INPUT_MAIL_FILTER(`opendkim', `S=inet:8891@localhost') in sendmail.mc) and publish the "
    "public key at <selector>._domainkey.<domain> (RFC 6376); check it with `mtalens dns check "
    "DOMAIN -s SELECTOR`.",
    "throttling:rate-limiting": "Destinations throttle us for volume or reputation. Slow down "
    "per destination: a queue group of their own with few runners and few recipients per "
    "envelope (QUEUE_GROUP with R= and r=, FEATURE(`queuegroup') and QGRP: entries in the "
    "access map); warm up new IPs gradually; check complaint rates and follow the providers' "
    "sender guidelines (https://support.google.com/mail/answer/81126, "
    "https://senders.yahooinc.com/best-practices/).",
    "throttling:greylisting": "Greylisting defers the first attempt from an unknown sender (RFC "
    "6647); mail goes through on retry ({delivered_later} already did). Keep the sending IP "
    "stable (CLIENT_OPTIONS(`Addr=...')) and do not run the queue much more often than the "
    "greylisting delay (the -q interval, confMIN_QUEUE_AGE). Nothing to fix unless delays "
    "matter; then ask the destination to allowlist you.",
    "dns-failures:lookup-failing": "Lookups end in 'try again' (SERVFAIL or timeout). If only "
    "these domains fail, their DNS is broken (check with `mtalens dns check DOMAIN`) and mail "
    "waits in the queue until it works or Timeout.queuereturn returns it. If many unrelated "
    "domains fail, this server's resolver is the problem: check /etc/resolv.conf.",
    "own-reverse-dns": "Give {names} a PTR record naming this server's host name (set by whoever "
    "owns the IP range: the ISP or hosting provider), and make that name resolve back to the "
    "same IP (an A/AAAA record): forward-confirmed reverse DNS. Use the same name in HELO "
    "(define(`confDOMAIN_NAME', ...) in sendmail.mc, the $j macro). Large providers refuse mail "
    "without it (https://support.google.com/mail/answer/81126).",
    "tls-outbound": "For 'TLS is required, but was not offered': a TLS_Srv: entry in the access "
    "map demands TLS that {subject} does not offer; relax that entry or ask the destination's "
    "operator to enable STARTTLS. For handshake failures: the two sides share no protocol "
    "version or cipher (see the TLS library errors); check confCIPHER_LIST and "
    "confCLIENT_SSL_OPTIONS.",
    "tls-inbound": "Clients fail the TLS handshake with this server (STARTTLS=server, error): "
    "usually old clients (TLS 1.0 only) or scanners. If real correspondents are among the "
    "clients, compare confCIPHER_LIST and confSERVER_SSL_OPTIONS (sendmail.mc; cf/README, "
    "STARTTLS) with what they support, and check that confSERVER_CERT and confSERVER_KEY are "
    "readable; otherwise nothing to do.",
    "delay-growth:in_queue": "Time waiting in the queue grew: deliveries are deferred and "
    "retried at each queue run (the -q interval, confMIN_QUEUE_AGE), or the queue runners "
    "cannot keep up (confMAX_QUEUE_CHILDREN, confMAX_RUNNERS_PER_QUEUE). Look at `mailq` and "
    "at the deferrals in the log.",
    "delay-growth:transmit": "The delivery attempts themselves take longer (Sendmail's xdelay=, "
    "the connection and the transfer together): destinations accept data slowly (tarpitting, "
    "rate limiting), their DNS or TLS is slow, or messages got bigger. Compare the message "
    "sizes and the destinations listed.",
}

REMEDIES: Final[Mapping[str, Mapping[str, str]]] = {"exim": _EXIM, "sendmail": _SENDMAIL}


def template_for(mta: str, problem: str, subject: Any) -> str | None:
    """The remedy template of ``problem`` (and its subject, for kinds of one problem) in
    ``mta``'s terms; None where Postfix's remedy stands (Postfix, or an MTA-neutral one)."""
    table = REMEDIES.get(mta)
    if table is None:
        return None
    return table.get(f"{problem}:{subject}") or table.get(problem)
