"""A private, real Sendmail 8.17 (Debian 12's sendmail-bin) on loopback for end-to-end tests.

Debian's sendmail packages conflict with postfix, so they are unpacked, not installed:
``.ci/unpack-sendmail.sh`` puts sendmail-bin, sendmail-base, sendmail-cf, GNU m4 and the
libraries the machine lacks (libwrap0, liblockfile1) under ``$MTALENS_SENDMAIL_ROOT`` (default
``/opt/mtalens-ci/sendmail``). ``SendmailLab(tmpdir, mx_port=...)`` then builds its own
``sendmail.cf`` and ``submit.cf`` with m4 from its own .mc files (cf/README in sendmail-cf names
every macro used) and runs ``sendmail -L sm-mta -bd -q<N>s`` as a daemon on
``127.0.0.1:<free port>``, as Debian's init script does, with its own queue, maps and mailboxes.
Nothing on the machine changes; the daemon sees a few private things through a mount namespace
(``unshare -m``, util-linux, mounts private by default), entered again with ``nsenter -m`` for
the commands the lab runs later (``sendmail -bm`` submissions, ``mailq``):

* the lab directory, bind-mounted at ``$MTALENS_SENDMAIL_ROOT/lab`` (the path every config file
  names): the MSP runs as ``smmsp`` and could not walk pytest's 0700 directories to its queue;
* ``/etc`` as an overlay (upper layer in the lab) adding ``smmsp``, the lab's local users and
  their groups to passwd/group, ``hosts: files`` in nsswitch.conf (no DNS: the client's reverse
  lookup reads a hosts file with ``127.0.0.1 localhost`` only), an ld.so.cache that also lists
  the unpacked libraries' directories (the binary is setgid, so ld.so ignores
  ``LD_LIBRARY_PATH``), and ``sasl2/Sendmail.conf`` (Cyrus SASL's config path starts at
  /etc/sasl2);
* ``/dev`` as an overlay whose ``log`` is a symbolic link to the lab's syslog socket.

Logging: Sendmail logs only through syslog(3), i.e. datagrams to ``/dev/log``. The lab runs
its own receiver (:class:`SyslogReceiver`, a thread) on a Unix datagram socket and writes each
message the way rsyslog's traditional file format does: ``Mmm dd hh:mm:ss HOST TAG[PID]: text``
(RFC 3164 header without the ``<PRI>``, the host name added by the receiver, control characters
escaped as ``#ooo`` like rsyslog's ``$EscapeControlCharactersOnReceive``). That is the line
shape /var/log/mail.log has on a Debian machine running sendmail. An rsyslogd would have done
the same but is not installed here, and it wants to own /dev/log and its config in /etc.

Routing (nothing leaves 127.0.0.0/8, no DNS): ``mailertable`` sends every domain (``.``) to
``esmtp:[127.0.0.1]`` with ``ESMTP_MAILER_ARGS`` ``TCP $h PORT`` (the fake MX, fake_mx.py),
except ``down.example.com``, sent to the same port on 127.0.0.9 where nothing listens;
``FEATURE(nocanonify)``, ``accept_unresolvable_domains``, ``confDONT_PROBE_INTERFACES``, a
service switch with ``hosts files`` and ``aliases files``. ``example.net`` is local
(``LOCAL_DOMAIN``): its users (:data:`LOCAL_USERS`) get mail through the local mailer, which is
:data:`MAILDIR_DELIVER` (a shell script: one message into ``mail/<user>/Maildir/new``, via
``tmp/``), run as root like Debian's ``sensible-mda`` (its ostype sets ``F=S``). Senders use
``...@example.net``, so Sendmail's DSNs (RFC 3464: returned mail, delay warnings) land in
``mail/<user>/Maildir``. Clients from 127.0.0.1 (``localhost`` in ``$=w``) may relay; a client
from another loopback address may not, and check_rcpt answers ``550 5.7.1 ... Relaying denied``.

STARTTLS: the daemon has a certificate from a lab CA (``probe_lab.LabCA``); as a client it
tries STARTTLS whenever the fake MX offers it. AUTH: Cyrus SASL with a sasldb
(``saslpasswd2``, if sasl2-bin is there) behind ``TRUST_AUTH_MECH(PLAIN LOGIN)``.

Queue timings are seconds (:class:`SendmailTimings`): ``Timeout.queuewarn`` gives a delay DSN
and ``Timeout.queuereturn`` makes a still-deferred message bounce at the next queue run
(``-q<N>s``). ``LogLevel`` defaults to 10: the cf default 9 (Debian's too) plus, among
others, a ``NOQUEUE: connect from`` line per connection, ``AUTH=server`` per successful AUTH,
``AUTH=client`` and ``tls_clt_features=`` per outgoing connection.

Pitfalls met (Sendmail 8.17.1.9, Debian 12, as root in a gVisor sandbox):

1. Debian's ostype (``OSTYPE(debian)``) includes ``/usr/share/sendmail/cf/debian/autoconf.m4``
   unless ``sm_version`` is defined: the .mc files include the unpacked copy first.
2. m4 expands macro names inside ``#`` comments of a .mc (a comment naming a feature in
   parentheses included it twice): the .mc comments are ``dnl`` lines naming no macro.
3. makemap(8) reads /etc/mail/sendmail.cf (for TrustedUser) unless given ``-C``.
4. 8.17.1.9 refuses bare LFs in DATA (``421 4.5.0 Bare linefeed (LF) not allowed``, the SMTP
   smuggling fix); smtplib sends ``bytes`` as they are, so :meth:`SendmailLab.transaction`
   renders the message with CRLFs (``email.policy.SMTP``).
5. This sandbox has no /dev/log at all, so nothing can be bind-mounted over it: /dev is an
   overlay instead. The MSP logs as ``smmsp``: the socket's directory must be searchable.
6. Sendmail sends ``AUTH=<>`` on MAIL FROM to a server that offers AUTH; aiosmtpd offers AUTH
   after STARTTLS and then refused the parameter (555), so fake_mx.py now drops it.

Precautions taken without having seen the failure: ``HostStatusDirectory`` is left undefined
(a persistent host status would keep the fake MX "down" for ``Timeout.hoststatus`` after one
421, cf/README), and the private key is mode 0600 (Sendmail's file safety checks).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from pathlib import Path
from types import TracebackType
from typing import Final

from .fake_mx import free_loopback_port

ROOT_ENV: Final = "MTALENS_SENDMAIL_ROOT"
DEFAULT_ROOT: Final = Path("/opt/mtalens-ci/sendmail")
LOCAL_DOMAIN: Final = "example.net"
HOSTNAME: Final = "mx1.example.net"
# The short name rsyslog would write in front of the tag on a machine called mx1.
SYSLOG_HOST: Final = "mx1"
LOCAL_USERS: Final = ("sender", "alice")
SASL_USER: Final = "alice"
# A destination whose MX address has nothing listening: "Connection refused", deferred, expires.
DOWN_DOMAIN: Final = "down.example.com"
DOWN_HOST: Final = "127.0.0.9"
SASL_PASSWORD: Final = "lab-secret-1"
# What Sendmail's daemon answers after DATA: "250 2.0.0 5B4IhTQx006514 Message accepted ...".
_ACCEPTED: Final = re.compile(r"2\.0\.0 ([0-9A-Za-z]{14}) Message accepted")

MAILDIR_DELIVER: Final = """#!/bin/sh
# The lab's local mailer (LOCAL_MAILER_PATH): argv is "maildir-deliver BASE USER"; the message
# arrives on stdin and goes into BASE/USER/Maildir/new by way of tmp/ (maildir(5): a reader
# never sees half a file). Exit 0 is "Sent" to sendmail; anything else is EX_TEMPFAIL (75).
umask 077
dir="$1/$2/Maildir"
mkdir -p "$dir/tmp" "$dir/new" "$dir/cur" || exit 75
name="$(date +%s).M$(date +%N)P$$.mx1"
cat >"$dir/tmp/$name" || exit 75
mv "$dir/tmp/$name" "$dir/new/$name" || exit 75
"""


class LabError(RuntimeError):
    """The lab could not start, stop or run a Sendmail command; carries its output."""


def sendmail_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def missing_reason(root: Path | None = None) -> str | None:
    """Why the lab cannot run here (``None`` if it can): the unpacked tree, root, tools."""
    root = root or sendmail_root()
    if not (root / "root/usr/libexec/sendmail/sendmail").exists():
        return f"no unpacked Sendmail under {root} (run .ci/unpack-sendmail.sh as root)"
    if os.geteuid() != 0:
        return "the Sendmail lab runs as root (mount namespaces, the daemon's own users)"
    for tool in ("unshare", "nsenter", "ldconfig"):
        if shutil.which(tool) is None and not os.path.exists(f"/sbin/{tool}"):
            return f"{tool} not found (util-linux, libc-bin)"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendmailTimings:
    """Seconds: the daemon's queue run interval (``-q``), Timeout.queuewarn, .queuereturn."""

    queue_interval: int = 5
    queue_warn: int = 15
    queue_return: int = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """What the daemon answered: the queue id (None if nothing was queued) and refusals."""

    queue_id: str | None
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    data_reply: tuple[int, str] | None = None


class SyslogReceiver:
    """A /dev/log stand-in: RFC 3164 datagrams in, rsyslog-style file lines out (module doc)."""

    _HEADER: Final = re.compile(rb"<(\d{1,3})>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) ?(.*)", re.S)

    def __init__(self, socket_path: Path, log_path: Path, hostname: str = SYSLOG_HOST) -> None:
        self.socket_path: Final = socket_path
        self.log_path: Final = log_path
        self.hostname: Final = hostname
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.received = 0

    def start(self) -> SyslogReceiver:
        self.socket_path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o666)  # the MSP writes to it as smmsp
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="lab-syslog", daemon=True)
        self._thread.start()
        return self

    def format(self, datagram: bytes) -> bytes:
        match = self._HEADER.match(datagram.rstrip(b"\0\n"))
        if match is None:  # not from syslog(3): keep it whole, as rsyslog keeps unparsable input
            stamp = time.strftime("%b %e %H:%M:%S").encode()
            body = datagram.rstrip(b"\0\n")
        else:
            stamp, body = match.group(2), match.group(3)
        escaped = re.sub(rb"[\x00-\x1f\x7f]", lambda m: b"#%03o" % m.group(0)[0], body)
        return stamp + b" " + self.hostname.encode() + b" " + escaped + b"\n"

    def _run(self) -> None:
        assert self._sock is not None
        with open(self.log_path, "ab", buffering=0) as log:
            while not self._stop.is_set():
                try:
                    datagram = self._sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                log.write(self.format(datagram))
                self.received += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self.socket_path.unlink(missing_ok=True)


def mx_tls_context(directory: Path, hostname: str = "mx.example.com") -> ssl.SSLContext:
    """A server context for ``FakeMX(tls_context=...)``: a certificate from a CA of its own,
    one Sendmail does not know, so its client logs ``STARTTLS=client, ..., verify=FAIL``."""
    from .probe_lab import LabCA  # cryptography: only when asked
    from .problem_lab import server_tls_context

    ca = LabCA.create(directory)
    now = dt.datetime.now(dt.UTC)
    cert, key = ca.issue(
        directory,
        "fake-mx",
        dns_names=(hostname,),
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
    )
    return server_tls_context(cert, key)


def _free_id(taken: Iterable[int], start: int) -> int:
    used = set(taken)
    return next(i for i in range(start, 60000) if i not in used)


class SendmailLab:
    """A private Sendmail under ``tmpdir``; see the module docstring."""

    def __init__(
        self,
        tmpdir: Path,
        *,
        mx_port: int,
        smtp_port: int | None = None,
        timings: SendmailTimings = SendmailTimings(),
        log_level: int = 10,
        root: Path | None = None,
    ) -> None:
        self.sm_root: Final = (root or sendmail_root()).resolve()
        self.root: Final = (Path(tmpdir) / "sendmail-lab").resolve()
        # The lab directory as the namespace sees it (bind mount); config files name these paths.
        self.inside: Final = self.sm_root / "lab"
        self.binary: Final = self.sm_root / "root/usr/libexec/sendmail/sendmail"
        self.cf_dir: Final = self.sm_root / "root/usr/share/sendmail/cf"
        self.etc: Final = self.root / "etc"
        self.queue_dir: Final = self.root / "mqueue"
        self.msp_queue_dir: Final = self.root / "clientmqueue"
        self.log_path: Final = self.root / "log" / "mail.log"
        self.mail_base: Final = self.root / "mail"
        self.mx_port: Final = mx_port
        self.smtp_port: Final = smtp_port if smtp_port is not None else free_loopback_port()
        self.timings: Final = timings
        self.log_level: Final = log_level
        self._sock_dir: Path | None = None
        self.syslog: SyslogReceiver | None = None  # while the lab runs
        self.auth = shutil.which("saslpasswd2") is not None or os.path.exists(
            "/usr/sbin/saslpasswd2"
        )
        self._pid: int | None = None

    def ns(self, path: Path) -> str:
        """``path`` (under the lab directory) as the namespace sees it."""
        return str(self.inside / path.relative_to(self.root))

    # -- configuration -------------------------------------------------------------------

    def mta_mc(self) -> str:
        t = self.timings
        etc, lab = self.ns(self.etc), str(self.inside)
        return f"""divert(-1)
dnl The lab MTA (sendmail.cf), see tests/lab/sendmail_lab.py. m4 expands macro names even in
dnl these comment lines, so they name none.
divert(0)dnl
include(`{self.cf_dir}/debian/autoconf.m4')dnl
VERSIONID(`mtalens sendmail lab')dnl
define(`MAIL_SETTINGS_DIR', `{etc}/')dnl
OSTYPE(`debian')dnl
define(`confDOMAIN_NAME', `{HOSTNAME}')dnl
define(`QUEUE_DIR', `{lab}/mqueue')dnl
define(`STATUS_FILE', `{lab}/lib/sendmail.st')dnl
undefine(`confHOST_STATUS_DIRECTORY')dnl
define(`confDEAD_LETTER_DROP', `{lab}/lib/dead.letter')dnl
define(`confPID_FILE', `{lab}/run/sendmail.pid')dnl
define(`ALIAS_FILE', `{etc}/aliases')dnl
define(`confHELP_FILE', `{self.sm_root}/root/etc/mail/helpfile')dnl
define(`confSERVICE_SWITCH_FILE', `{etc}/service.switch')dnl
define(`confHOSTS_FILE', `{etc}/hosts')dnl
define(`confFORWARD_PATH', `')dnl
define(`confLOG_LEVEL', `{self.log_level}')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confTO_QUEUEWARN', `{t.queue_warn}s')dnl
define(`confTO_QUEUERETURN', `{t.queue_return}s')dnl
define(`confPRIVACY_FLAGS', `authwarnings,novrfy,noexpn')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {self.mx_port}')dnl
define(`LOCAL_MAILER_PATH', `{lab}/bin/maildir-deliver')dnl
define(`LOCAL_MAILER_ARGS', `maildir-deliver {lab}/mail $u')dnl
define(`confCACERT_PATH', `{etc}/tls')dnl
define(`confCACERT', `{etc}/tls/ca.pem')dnl
define(`confSERVER_CERT', `{etc}/tls/mx1.crt')dnl
define(`confSERVER_KEY', `{etc}/tls/mx1.key')dnl
define(`confAUTH_MECHANISMS', `PLAIN LOGIN')dnl
TRUST_AUTH_MECH(`PLAIN LOGIN')dnl
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA, Port={self.smtp_port}, Addr=127.0.0.1')dnl
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`mailertable', `hash -o {etc}/mailertable')dnl
LOCAL_DOMAIN(`{LOCAL_DOMAIN}')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""

    def submit_mc(self) -> str:
        etc, lab = self.ns(self.etc), str(self.inside)
        return f"""divert(-1)
dnl The lab MSP (submit.cf): it relays to the lab MTA's port, see tests/lab/sendmail_lab.py.
divert(0)dnl
include(`{self.cf_dir}/debian/autoconf.m4')dnl
VERSIONID(`mtalens sendmail lab submit')dnl
define(`MAIL_SETTINGS_DIR', `{etc}/')dnl
OSTYPE(`debian')dnl
define(`confDOMAIN_NAME', `{HOSTNAME}')dnl
define(`MSP_QUEUE_DIR', `{lab}/clientmqueue')dnl
define(`STATUS_FILE', `{lab}/clientmqueue/sm-client.st')dnl
undefine(`confHOST_STATUS_DIRECTORY')dnl
define(`confDEAD_LETTER_DROP', `{lab}/lib/dead.letter')dnl
define(`confPID_FILE', `{lab}/clientmqueue/sm-client.pid')dnl
define(`confHELP_FILE', `{self.sm_root}/root/etc/mail/helpfile')dnl
define(`confSERVICE_SWITCH_FILE', `{etc}/service.switch')dnl
define(`confHOSTS_FILE', `{etc}/hosts')dnl
define(`confLOG_LEVEL', `{self.log_level}')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {self.smtp_port}')dnl
FEATURE(`msp', `[127.0.0.1]')dnl
"""

    def _m4(self, mc: str, out: Path) -> None:
        m4 = self.sm_root / "root/usr/bin/m4"
        src = out.with_suffix(".mc")
        src.write_text(mc)
        proc = subprocess.run(
            [str(m4 if m4.exists() else "m4"), f"{self.cf_dir}/m4/cf.m4", str(src)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0 or "ERROR" in proc.stderr:
            raise LabError(f"m4 {src} failed ({proc.returncode}):\n{proc.stderr}")
        out.write_text(proc.stdout)
        os.chmod(out, 0o644)

    def _write_etc_overlay(self) -> None:
        upper = self.root / "ns/etc"
        upper.mkdir(parents=True, exist_ok=True)
        (self.root / "ns/etc-work").mkdir(exist_ok=True)
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        users = {line.split(":")[0]: line for line in passwd.splitlines() if line}
        groups = {line.split(":")[0]: line for line in group.splitlines() if line}
        uids = [int(line.split(":")[2]) for line in users.values()]
        gids = [int(line.split(":")[2]) for line in groups.values()]
        extra_users, extra_groups = [], []
        for name in ("smmsp", *LOCAL_USERS):
            if name in users:
                continue
            uid = _free_id(uids, 2100)
            gid = _free_id(gids, 2100)
            uids.append(uid)
            gids.append(gid)
            extra_users.append(f"{name}:x:{uid}:{gid}:lab user:/nonexistent:/usr/sbin/nologin")
            if name not in groups:
                extra_groups.append(f"{name}:x:{gid}:")
        (upper / "passwd").write_text(
            passwd.rstrip("\n") + "\n" + "".join(u + "\n" for u in extra_users)
        )
        (upper / "group").write_text(
            group.rstrip("\n") + "\n" + "".join(g + "\n" for g in extra_groups)
        )
        (upper / "hosts").write_text("127.0.0.1 localhost\n")
        (upper / "nsswitch.conf").write_text(
            "passwd: files\ngroup: files\nshadow: files\nhosts: files\nservices: files\n"
            "protocols: files\nnetworks: files\n"
        )
        libdirs = sorted(
            {str(p.parent) for p in (self.sm_root / "root").rglob("*.so*") if p.is_file()}
        )
        conf = self.root / "ns/ld.so.conf"
        conf.write_text(
            "".join(d + "\n" for d in libdirs)
            + "include /etc/ld.so.conf.d/*.conf\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n"
        )
        ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
        subprocess.run(
            [ldconfig, "-C", str(upper / "ld.so.cache"), "-f", str(conf)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        sasl = upper / "sasl2"
        sasl.mkdir(exist_ok=True)
        (sasl / "Sendmail.conf").write_text(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
            f"sasldb_path: {self.ns(self.etc)}/sasldb2\n"
        )

    def _write_dev_overlay(self) -> None:
        upper = self.root / "ns/dev"
        upper.mkdir(parents=True, exist_ok=True)
        (self.root / "ns/dev-work").mkdir(exist_ok=True)
        (upper / "log").unlink(missing_ok=True)
        assert self.syslog is not None
        (upper / "log").symlink_to(self.syslog.socket_path)

    def _write_tls(self) -> None:
        from .probe_lab import LabCA  # cryptography: only when the lab starts

        tls = self.etc / "tls"
        ca = LabCA.create(tls)
        now = dt.datetime.now(dt.UTC)
        _cert, key = ca.issue(
            tls,
            "mx1",
            dns_names=(HOSTNAME,),
            ips=("127.0.0.1",),
            not_before=now - dt.timedelta(days=1),
            not_after=now + dt.timedelta(days=30),
        )
        os.chmod(key, 0o600)  # pitfall 3
        os.chmod(tls, 0o755)

    def _write_sasldb(self) -> None:
        if not self.auth:
            return
        saslpasswd2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
        subprocess.run(
            [saslpasswd2, "-f", str(self.etc / "sasldb2"), "-c", "-p", "-u", HOSTNAME, SASL_USER],
            input=SASL_PASSWORD,
            text=True,
            check=True,
            capture_output=True,
            timeout=30,
        )
        os.chmod(self.etc / "sasldb2", 0o600)

    def write_config(self) -> None:
        for sub in ("etc", "mqueue", "lib", "run", "log", "mail", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(self.queue_dir, 0o700)
        self.inside.mkdir(exist_ok=True)
        self.log_path.touch()
        self._write_etc_overlay()
        self._write_dev_overlay()
        self._write_tls()
        self._write_sasldb()
        etc = self.etc
        (etc / "service.switch").write_text("hosts files\naliases files\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        (etc / "aliases").write_text("postmaster: root\nMAILER-DAEMON: postmaster\n")
        # mailertable(5)-style: the most specific domain wins, "." matches every other one.
        (etc / "mailertable").write_text(
            f"{DOWN_DOMAIN} esmtp:[{DOWN_HOST}]\n. esmtp:[127.0.0.1]\n"
        )
        deliver = self.root / "bin/maildir-deliver"
        deliver.write_text(MAILDIR_DELIVER)
        os.chmod(deliver, 0o755)
        self._m4(self.mta_mc(), etc / "sendmail.cf")
        self._m4(self.submit_mc(), etc / "submit.cf")
        # The MSP's queue: owned by smmsp, group-writable (msp.m4's comment; Debian's layout).
        self.msp_queue_dir.mkdir(exist_ok=True)
        smmsp = self._lab_user("smmsp")
        os.chown(self.msp_queue_dir, smmsp[0], smmsp[1])
        os.chmod(self.msp_queue_dir, 0o770)

    def _lab_user(self, name: str) -> tuple[int, int]:
        for line in (self.root / "ns/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2]), int(fields[3])
        raise LabError(f"no {name} in the lab's passwd")

    # -- namespace and commands ----------------------------------------------------------

    def _mounts(self) -> str:
        ns = self.root / "ns"
        return (
            f"mount --bind {self.root} {self.inside}"
            f" && mount -t overlay overlay -o lowerdir=/etc,upperdir={ns}/etc,workdir={ns}/etc-work /etc"
            f" && mount -t overlay overlay -o lowerdir=/dev,upperdir={ns}/dev,workdir={ns}/dev-work /dev"
        )

    def sendmail_argv(self, *args: str, submit: bool = False) -> list[str]:
        cf = self.ns(self.etc / ("submit.cf" if submit else "sendmail.cf"))
        return [str(self.binary), "-C", cf, *args]

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60.0) -> str:
        """Run ``argv`` inside the daemon's mount namespace (``nsenter -m``)."""
        if self._pid is None:
            raise LabError("the lab is not running")
        proc = subprocess.run(
            ["nsenter", f"--mount=/proc/{self._pid}/ns/mnt", "--", *argv],
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise LabError(
                f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout!r}\n{proc.stderr!r}"
            )
        return proc.stdout.decode("utf-8", "replace")

    def start(self) -> SendmailLab:
        reason = missing_reason(self.sm_root)
        if reason is not None:
            raise LabError(reason)
        # AF_UNIX paths are limited to 108 bytes; pytest's directories can be longer.
        self._sock_dir = Path(tempfile.mkdtemp(prefix="mtalens-syslog-"))
        os.chmod(self._sock_dir, 0o755)  # the MSP logs as smmsp
        self.syslog = SyslogReceiver(self._sock_dir / "log", self.log_path)
        try:
            self.write_config()
            self.syslog.start()
            self._start_daemon()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_daemon(self) -> None:
        etc = self.ns(self.etc)
        makemap = self.sm_root / "root/usr/libexec/sendmail/makemap"
        t = self.timings
        script = (
            f"{self._mounts()}"
            f" && {makemap} -C {etc}/sendmail.cf hash {etc}/mailertable < {etc}/mailertable"
            f" && {' '.join(self.sendmail_argv('-bi'))} >/dev/null"
            f" && exec {' '.join(self.sendmail_argv('-L', 'sm-mta', '-bd', f'-q{t.queue_interval}s'))}"
        )
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise LabError(
                f"sendmail did not start ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        self._pid = self._wait_pid(timeout=30.0)
        self._wait_listening(timeout=30.0)

    def _wait_pid(self, timeout: float) -> int:
        pid_file = self.root / "run/sendmail.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split()[0])
                if Path(f"/proc/{pid}").exists():
                    return pid
            except (FileNotFoundError, IndexError, ValueError):
                pass
            time.sleep(0.1)
        raise LabError(f"no sendmail.pid after {timeout}s\n{self.log_text()}")

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=5) as smtp:
                    smtp.noop()
                return
            except (OSError, smtplib.SMTPException) as exc:
                last = exc
                time.sleep(0.2)
        raise LabError(f"sendmail did not answer on {self.smtp_port}: {last}\n{self.log_text()}")

    def stop(self) -> None:
        """Stop the daemon, then the syslog receiver; safe to call twice or after a failed start."""
        pid, self._pid = self._pid, None
        if pid is not None:
            # The daemon leads its own process group (it calls setsid); queue runners and
            # delivery children are in it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # the last datagrams
        if self.syslog is not None:
            self.syslog.stop()
            self.syslog = None
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None

    # -- mail ----------------------------------------------------------------------------

    def send(
        self,
        sender: str,
        rcpts: Sequence[str],
        subject: str,
        body: str = "lab message\n",
        *,
        client_ip: str = "127.0.0.1",
        helo: str = "client.example.net",
        headers: Mapping[str, str] | None = None,
    ) -> SendResult:
        """One SMTP session, one message; refused recipients are reported, not raised."""
        refused: dict[str, tuple[int, str]] = {}
        with smtplib.SMTP(
            "127.0.0.1", self.smtp_port, local_hostname=helo, source_address=(client_ip, 0)
        ) as s:
            s.ehlo()
            return self.transaction(
                s, sender, rcpts, subject, body, headers=headers, refused=refused
            )

    def transaction(
        self,
        s: smtplib.SMTP,
        sender: str,
        rcpts: Sequence[str],
        subject: str,
        body: str = "lab message\n",
        *,
        headers: Mapping[str, str] | None = None,
        refused: dict[str, tuple[int, str]] | None = None,
    ) -> SendResult:
        """MAIL, RCPT..., DATA on an open session ``s`` (so one session can carry several)."""
        refused = {} if refused is None else refused
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = ", ".join(rcpts)
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=True)
        headers = {"Message-ID": make_msgid(domain="client.example.net"), **(headers or {})}
        for name, value in headers.items():
            msg[name] = value
        msg.set_content(body)
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
        # CRLF line ends: Sendmail 8.17.1.9 refuses bare LFs (421 4.5.0, SMTP smuggling).
        code, reply = s.data(msg.as_bytes(policy=SMTP))
        text = reply.decode("utf-8", "replace")
        match = _ACCEPTED.search(text)
        return SendResult(
            queue_id=match.group(1) if match else None, refused=refused, data_reply=(code, text)
        )

    def submit(self, sender: str, rcpts: Sequence[str], message: bytes) -> None:
        """A local submission: ``sendmail -bm -f SENDER RCPT...`` through the MSP (submit.cf),
        which relays it to the daemon over SMTP, as mail(1) or cron would."""
        self.run([*self.sendmail_argv("-bm", "-f", sender, *rcpts, submit=True)], input=message)

    def queue_ids(self) -> list[str]:
        """Queue ids of the messages in the MTA's and the MSP's queue (their ``qf`` files)."""
        ids = []
        for d in (self.queue_dir, self.msp_queue_dir):
            if d.is_dir():
                ids.extend(p.name[2:] for p in d.iterdir() if p.name.startswith("qf"))
        return sorted(ids)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def maildir(self, user: str) -> Path:
        return self.mail_base / user / "Maildir"

    def maildir_messages(self, user: str) -> list[bytes]:
        """Raw messages delivered to ``user``'s Maildir (``new/`` and ``cur/``), oldest first."""
        paths: list[Path] = []
        for sub in ("new", "cur"):
            d = self.maildir(user) / sub
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
        """Wait until both queues are empty, every ``expect`` regex matches the log, and the
        log has not grown for ``settle`` seconds."""
        patterns = [re.compile(p) if isinstance(p, str) else p for p in expect]
        deadline = time.monotonic() + timeout
        last_size = -1
        stable_since = time.monotonic()
        while True:
            queued = self.queue_ids()
            text = self.log_text()
            missing = [p.pattern for p in patterns if not p.search(text)]
            now = time.monotonic()
            if len(text) != last_size:
                last_size, stable_since = len(text), now
            if not queued and not missing and now - stable_since >= settle:
                return
            if now > deadline:
                raise TimeoutError(
                    f"lab not idle after {timeout}s: queued {queued}, missing {missing}\n"
                    f"log tail:\n{text[-4000:]}"
                )
            time.sleep(0.5)

    def __enter__(self) -> SendmailLab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
