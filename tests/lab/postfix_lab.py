"""A private, real Postfix instance on loopback for end-to-end tests.

``PostfixLab(tmpdir, mx_port=...)`` writes its own ``main.cf``/``master.cf`` under ``tmpdir`` and
runs Debian's Postfix (3.7, bookworm) with ``postfix -c DIR start``: its own config, queue and
data directories, SMTP on ``127.0.0.1:<free port>``, logging to a plain file (``maillog_file``
through the ``postlogd`` service, Postfix >= 3.4; see MAILLOG_README and postlogd(8)), and
DNS switched off. Mail is routed as follows (nothing leaves 127.0.0.0/8):

* ``example.com``, ``example.org`` and every other remote domain ->
  ``smtp:[127.0.0.1]:MX_PORT`` (the fake MX, ``fake_mx.py``). A bracketed IP nexthop needs no MX
  or A lookup (transport(5)), and ``default_transport``/``relay_transport`` point at the same
  nexthop, so no name can reach the machine's resolver.
* ``example.net`` (the lab's own domain) -> virtual(8) into one catch-all Maildir
  (``maildir_path``): senders use ``...@example.net``, so DSNs (bounces, delay warnings) land
  there. ``reject*@example.net`` is refused at RCPT by ``check_recipient_access`` (an access(5)
  regexp table), which logs ``NOQUEUE: reject: RCPT from ...``.

Queue timings are seconds (``LabTimings``) so deferred mail produces delay DSNs and expires
inside a test (postconf(5): ``queue_run_delay``, ``minimal_backoff_time``,
``maximal_backoff_time``, ``maximal_queue_lifetime``, ``bounce_queue_lifetime``,
``delay_warning_time``).

Pitfalls met while building this (Debian 12, Postfix 3.7.11, as root in a gVisor sandbox):

1. ``maillog_file`` must start with one of ``maillog_file_prefixes`` (default ``/var,
   /dev/stdout``), otherwise postlogd refuses it: the lab sets the prefix to its own directory.
2. ``relay_transport`` defaults to ``relay``, a master.cf service the lab does not define;
   both it and ``default_transport`` are set to the fake MX nexthop.
3. Postfix opens some files as unprivileged users: master(8) opens
   ``data_directory/master.lock`` as ``mail_owner``, and virtual(8) writes a Maildir as the
   delivery uid (never root: ``virtual_minimum_uid`` >= 1). pytest's and mkdtemp's directories
   are mode 0700 root, so ``start()`` adds the search bit (``o+x``, not read) to each parent of
   the lab directory that lacks it (``loosened_dirs`` lists them; never removed, as another lab
   may share them). That is not enough for deliveries: every pytest session resets
   ``/tmp/pytest-of-<user>`` to 0700 when it starts (``_pytest/tmpdir.py``), and engineers run
   pytest concurrently. So virtual(8) runs chrooted in the queue directory (master.cf chroot
   column ``y``, entered as root) and ``virtual_mailbox_base = /mail`` is resolved inside the
   chroot, i.e. ``<queue_directory>/mail``; no parent directory is walked at delivery time.
   A chrooted virtual(8) opens its maps lazily, after the chroot, and cannot see the lab's
   ``etc/`` (with ``proxy:hash:`` the 3.7.11 virtual(8) here still opened the file itself:
   observed, not investigated further), so ``virtual_mailbox_maps`` is a ``static:`` table.
   Every other daemon has ``chdir``-ed into the queue directory as root and uses relative
   paths.
4. No ``/etc/postfix/main.cf`` exists with the "No configuration" debconf choice; ``postfix
   -c DIR`` and ``postqueue -c DIR`` are accepted for root without ``alternate_config_directories``.
5. With ``inet_interfaces = 127.0.0.1`` the SMTP client still reaches the fake MX on the same
   address (observed: no "loops back to myself" for a ``[ip]:port`` nexthop); the fake MX greets with another name than ``myhostname`` to avoid the
   "greeted me with my own hostname" check.
6. ``smtpd_peername_lookup = no`` keeps smtpd from reverse-resolving the client: log lines read
   ``unknown[127.0.0.1]``.
7. Sub-hour ``delay_warning_time``/``maximal_queue_lifetime`` make bounce(8)'s stock delay
   template (bounce(5)) print "0 hour(s)" / "0 day(s)" in delay DSNs and log six
   ``warning: ... zero result in delay template conversion`` lines per delay DSN. The lab keeps
   the stock templates (real Postfix text); the golden samples show both effects.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import smtplib
import stat
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Final

from .fake_mx import free_loopback_port

LOCAL_DOMAIN: Final = "example.net"
REMOTE_DOMAINS: Final = ("example.com", "example.org")
HOSTNAME: Final = "mx1.example.net"
# The delivery user for virtual(8); Debian's "nobody". Any uid >= virtual_minimum_uid works.
VIRTUAL_UID: Final = 65534
VIRTUAL_GID: Final = 65534

# "250 2.0.0 Ok: queued as 4Xyz..." (smtpd(8) reply after DATA).
_QUEUED_AS: Final = re.compile(r"queued as ([0-9A-Za-z]+)")


class LabError(RuntimeError):
    """The lab could not start, stop or run a Postfix command; carries its output."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LabTimings:
    """Queue timings, in seconds (postconf(5) time values with an ``s`` suffix)."""

    queue_run_delay: int = 3
    minimal_backoff_time: int = 3
    maximal_backoff_time: int = 6
    maximal_queue_lifetime: int = 30
    bounce_queue_lifetime: int = 30
    delay_warning_time: int = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """What smtpd answered: the queue id (None if every recipient was refused) and refusals."""

    queue_id: str | None
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)


def _find_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        raise LabError(f"{name} not found: install Debian's postfix package")
    return path


class PostfixLab:
    """A private Postfix under ``tmpdir``; see the module docstring for its routing."""

    def __init__(
        self,
        tmpdir: Path,
        *,
        mx_port: int,
        smtp_port: int | None = None,
        timings: LabTimings = LabTimings(),
        hostname: str = HOSTNAME,
    ) -> None:
        self.root: Final = Path(tmpdir) / "postfix-lab"
        self.config_dir: Final = self.root / "etc"
        self.queue_dir: Final = self.root / "spool"
        self.data_dir: Final = self.root / "lib"
        self.log_dir: Final = self.root / "log"
        self.log_path: Final = self.log_dir / "maillog"
        # Pitfall 3: "/mail" inside virtual(8)'s chroot (the queue directory) is this directory.
        self.mail_base: Final = self.queue_dir / "mail"
        self.maildir_path: Final = self.mail_base / LOCAL_DOMAIN / "Maildir"
        self.mx_port: Final = mx_port
        self.smtp_port: Final = smtp_port if smtp_port is not None else free_loopback_port()
        self.timings: Final = timings
        self.hostname: Final = hostname
        self._postfix = _find_binary("postfix")
        self._postqueue = _find_binary("postqueue")
        self._postmap = _find_binary("postmap")
        self._started = False
        self.loosened_dirs: list[Path] = []

    # -- configuration -------------------------------------------------------------------

    @property
    def nexthop(self) -> str:
        return f"smtp:[127.0.0.1]:{self.mx_port}"

    def main_cf(self) -> dict[str, str]:
        """The main.cf settings (postconf(5) names), in the order they are written."""
        t = self.timings
        cfg = self.config_dir
        return {
            "compatibility_level": "3.6",
            "config_directory": str(cfg),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            # Pitfall 1: maillog_file must sit under one of maillog_file_prefixes.
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.log_dir),
            "myhostname": self.hostname,
            "mydomain": LOCAL_DOMAIN,
            "myorigin": "$mydomain",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            # No DNS anywhere: smtp(8) with native lookups and no DNS, nexthops are [ip]:port.
            "disable_dns_lookups": "yes",
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "transport_maps": f"hash:{cfg}/transport",
            "default_transport": self.nexthop,
            "relay_transport": self.nexthop,
            "virtual_mailbox_domains": LOCAL_DOMAIN,
            # A static: table needs no file, which the chrooted virtual(8) could not open
            # (pitfall 3): every example.net address maps to one Maildir (trailing "/").
            "virtual_mailbox_maps": f"static:{LOCAL_DOMAIN}/Maildir/",
            "virtual_mailbox_base": "/mail",
            "virtual_uid_maps": f"static:{VIRTUAL_UID}",
            "virtual_gid_maps": f"static:{VIRTUAL_GID}",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": f"check_recipient_access regexp:{cfg}/recipient_access",
            "queue_run_delay": f"{t.queue_run_delay}s",
            "minimal_backoff_time": f"{t.minimal_backoff_time}s",
            "maximal_backoff_time": f"{t.maximal_backoff_time}s",
            "maximal_queue_lifetime": f"{t.maximal_queue_lifetime}s",
            "bounce_queue_lifetime": f"{t.bounce_queue_lifetime}s",
            "delay_warning_time": f"{t.delay_warning_time}s",
            "biff": "no",
        }

    def master_cf(self) -> str:
        """master.cf: the services this lab uses (master(5) columns; only virtual is chrooted)."""
        rows = (
            # service type private unpriv chroot wakeup maxproc command
            f"127.0.0.1:{self.smtp_port} inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            # Pitfall 3: chrooted into queue_directory; no parent directory walk per delivery.
            "virtual unix - n y - - virtual",
            # maillog_file is written by postlogd(8); it must be a unix-dgram service.
            "postlog unix-dgram n - n - 1 postlogd",
        )
        return "\n".join(rows) + "\n"

    def _grant_search(self) -> None:
        """Pitfall 3: let unprivileged Postfix processes walk down to the lab directory."""
        for parent in self.root.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)
                self.loosened_dirs.append(parent)

    def write_config(self) -> None:
        for d in (self.config_dir, self.queue_dir, self.data_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self._grant_search()
        self.log_path.touch()
        # postfix-files(5): data_directory belongs to mail_owner; master(8) opens its lock
        # file there with mail_owner's privileges.
        owner = pwd.getpwnam("postfix")
        os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        os.chmod(self.data_dir, 0o700)
        # The Maildir's parent belongs to the delivery uid, which creates the Maildir itself.
        self.mail_base.mkdir(exist_ok=True)
        os.chown(self.mail_base, VIRTUAL_UID, VIRTUAL_GID)
        os.chmod(self.mail_base, 0o700)
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf().items())
        (self.config_dir / "main.cf").write_text(main)
        (self.config_dir / "master.cf").write_text(self.master_cf())
        transport = "".join(f"{d} {self.nexthop}\n" for d in REMOTE_DOMAINS)
        (self.config_dir / "transport").write_text(transport)
        (self.config_dir / "recipient_access").write_text(
            # access(5) regexp table; REJECT answers with access_map_reject_code (554).
            f"/^reject[^@]*@{re.escape(LOCAL_DOMAIN)}$/ REJECT lab policy: no mail for this address\n"
        )
        for path in (self.config_dir / "main.cf", self.config_dir / "master.cf"):
            os.chmod(path, 0o644)
        self.postmap(self.config_dir / "transport")

    # -- commands ------------------------------------------------------------------------

    def _run(self, *argv: str, timeout: float = 60.0) -> str:
        env = {**os.environ, "MAIL_CONFIG": str(self.config_dir)}
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if proc.returncode != 0:
            raise LabError(
                f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc.stdout

    def postmap(self, path: Path, table_type: str = "hash") -> None:
        """Build ``path.db`` from ``path`` (postmap(1))."""
        self._run(self._postmap, "-c", str(self.config_dir), f"{table_type}:{path}")

    def start(self) -> PostfixLab:
        self.write_config()
        self._run(self._postfix, "-c", str(self.config_dir), "start")
        self._started = True
        self._wait_listening(timeout=30.0)
        return self

    def reload(self) -> None:
        self._run(self._postfix, "-c", str(self.config_dir), "reload")

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        # postfix-script waits up to 5 s for master(8), then kills its process group.
        self._run(self._postfix, "-c", str(self.config_dir), "stop")

    def flush(self) -> None:
        """Attempt delivery of all queued mail now (``postqueue -f``)."""
        self._run(self._postqueue, "-c", str(self.config_dir), "-f")

    def queue(self) -> list[dict[str, object]]:
        """The queue as postqueue(1) ``-j`` objects (one per message)."""
        out = self._run(self._postqueue, "-c", str(self.config_dir), "-j")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=5) as smtp:
                    smtp.noop()
                return
            except OSError as exc:
                last = exc
                time.sleep(0.2)
        raise LabError(f"smtpd did not answer on port {self.smtp_port}: {last}\n{self.log_text()}")

    # -- mail ----------------------------------------------------------------------------

    def send(
        self,
        sender: str,
        rcpts: Sequence[str],
        subject: str,
        body: str,
        headers: Mapping[str, str] | None = None,
    ) -> SendResult:
        """Submit one message over SMTP to the lab; refused recipients are reported, not raised."""
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = ", ".join(rcpts)
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(body)
        refused: dict[str, tuple[int, str]] = {}
        with smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.example.net") as s:
            s.ehlo()
            code, reply = s.mail(sender)
            if code != 250:
                raise LabError(f"MAIL FROM:<{sender}> refused: {code} {reply!r}")
            for rcpt in rcpts:
                code, reply = s.rcpt(rcpt)
                if code not in (250, 251):
                    refused[rcpt] = (code, reply.decode("utf-8", "replace"))
            if len(refused) == len(rcpts):
                s.rset()
                return SendResult(queue_id=None, refused=refused)
            code, reply = s.data(msg.as_bytes())
            if code != 250:
                raise LabError(f"DATA refused: {code} {reply!r}")
        match = _QUEUED_AS.search(reply.decode("ascii", "replace"))
        return SendResult(queue_id=match.group(1) if match else None, refused=refused)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def maildir_messages(self) -> list[bytes]:
        """Raw messages delivered to the lab Maildir (``new/`` and ``cur/``), oldest first."""
        paths: list[Path] = []
        for sub in ("new", "cur"):
            d = self.maildir_path / sub
            if d.is_dir():
                paths.extend(p for p in d.iterdir() if p.is_file())
        paths.sort(key=lambda p: (p.stat().st_mtime, p.name))
        return [p.read_bytes() for p in paths]

    def wait_until_idle(
        self,
        timeout: float,
        expect: Iterable[str | re.Pattern[str]] = (),
        settle: float = 1.0,
    ) -> None:
        """Wait until the queue is empty, every ``expect`` regex matches the log, and the log
        has not grown for ``settle`` seconds (postlogd writes asynchronously)."""
        patterns = [re.compile(p) if isinstance(p, str) else p for p in expect]
        deadline = time.monotonic() + timeout
        last_size = -1
        stable_since = time.monotonic()
        missing: list[str] = []
        queued: list[dict[str, object]] = []
        while True:
            queued = self.queue()
            text = self.log_text()
            missing = [p.pattern for p in patterns if not p.search(text)]
            size = len(text)
            now = time.monotonic()
            if size != last_size:
                last_size, stable_since = size, now
            if not queued and not missing and now - stable_since >= settle:
                return
            if now > deadline:
                raise TimeoutError(
                    f"lab not idle after {timeout}s: {len(queued)} queued, missing {missing}\n"
                    f"queue: {queued}\nlog tail:\n{text[-4000:]}"
                )
            time.sleep(0.5)

    def __enter__(self) -> PostfixLab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
