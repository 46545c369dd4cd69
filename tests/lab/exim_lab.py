"""A private, real Exim 4.96 (Debian's exim4-daemon-light, unpacked, not installed) on loopback.

Debian's exim4 packages conflict with postfix, which the other labs need, so ``.ci/run``
downloads them (``apt-get download``) and unpacks them (``dpkg -x``) under ``$MTALENS_EXIM_ROOT``
(default ``/opt/mtalens-ci/exim``): the binary is ``<root>/root/usr/sbin/exim4``, its one
library not on the machine (libidn12) under ``<root>/root/usr/lib/x86_64-linux-gnu``.

``EximLab(mx_port=...)`` runs that binary as a daemon (``-bdf``: in the foreground, a child of
the test) with its own configuration (``-C``), spool, log and pid file under a directory of its
own, listening for SMTP on ``127.0.0.1:<free port>`` and running the queue every
``queue_interval`` seconds (``-q<n>s``). Mail is routed as follows (nothing leaves
127.0.0.0/8, and no name is looked up: ``host_lookup`` and ``rfc1413_hosts`` are empty, the
remote route is an IP address):

* ``example.com``, ``example.org`` -> a ``manualroute`` router to ``127.0.0.1`` and the smtp
  transport on the fake MX's port (``fake_mx.py``, answers by local part);
* ``example.net`` (the lab's own domain): ``reject*`` is refused at RCPT by the ACL (the log's
  ``rejected RCPT <...>: ...`` line), every other local part is delivered by an appendfile
  transport with ``maildir_format`` into one catch-all Maildir (``maildir_path``). Senders use
  ``...@example.net``, so Exim's own bounces (RFC 3464 reports) land there.

The main log keeps Exim's own format (``log_file_path``) with ``log_selector = +queue_time
+deliver_time +received_recipients +smtp_connection`` (spec chapter "Log files": ``QT=``,
``DT=``, ``for <recipients>`` on arrivals, connection lines). The retry rule (spec chapter
"Retry configuration") is ``retry_rule``, seconds by default: a deferred recipient is given up
("retry timeout exceeded") on the first failed attempt after its cutoff.

The binary looks its ``Debian-exim`` user up at start-up, and being setuid root it ignores
``LD_LIBRARY_PATH`` in the processes it re-executes, so every Exim command runs in a private
mount namespace (``unshare -m``, propagation private: nothing leaks to the machine) with
``/etc/passwd`` and ``/etc/group`` bind-mounted from copies that add that user (when the
machine lacks it) and ``/etc/ld.so.cache`` from one that also lists libidn12's unpacked
directory. No network namespace: Exim only talks to 127.0.0.1 (the fake MX, and the test on
its listening port), which the test process must reach too.

Pitfalls met while building this (Debian 12's 4.96-15+deb12u10, as root in a gVisor sandbox):

1. A ``-C`` file that is not in the binary's TRUSTED_CONFIG_LIST makes the processes Exim
   re-executes as its own user log ``exim user lost privilege for using -C option`` and go on
   without root: local deliveries therefore run as ``Debian-exim`` (the transport's ``user``),
   which can write the Maildir it owns.
2. Processes running as ``Debian-exim`` walk down to the spool, the log and the Maildir, and
   pytest's temporary directories are 0700 root (and ``/tmp/pytest-of-<user>`` is reset to 0700
   by every pytest session that starts), so the lab lives in a directory of its own under
   ``/tmp`` (mode 0755), removed by ``stop()`` unless ``keep=True``.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Final

from .fake_mx import free_loopback_port
from .postfix_lab import LabError, SendResult

DEFAULT_ROOT: Final = Path("/opt/mtalens-ci/exim")
ROOT_ENV: Final = "MTALENS_EXIM_ROOT"
LOCAL_DOMAIN: Final = "example.net"
REMOTE_DOMAINS: Final = ("example.com", "example.org")
HOSTNAME: Final = "mx1.example.net"
EXIM_USER: Final = "Debian-exim"
LIB_DIR: Final = "usr/lib/x86_64-linux-gnu"


def exim_root() -> Path:
    """Where ``.ci/run`` unpacked the exim4 packages (``$MTALENS_EXIM_ROOT``)."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def exim_binary(root: Path | None = None) -> Path:
    return (root or exim_root()) / "root/usr/sbin/exim4"


def eximstats_script(root: Path | None = None) -> Path:
    """exim4-base's eximstats (a Perl script), unpacked next to the binary."""
    return (root or exim_root()) / "root/usr/sbin/eximstats"


CONFIG: Final = """\
primary_hostname = {hostname}
qualify_domain = {local_domain}
exim_path = {exim}
spool_directory = {lab}/spool
log_file_path = {lab}/log/%slog
pid_file_path = {lab}/exim.pid
log_selector = +queue_time +deliver_time +received_recipients +smtp_connection
local_interfaces = 127.0.0.1
daemon_smtp_ports = {smtp_port}
domainlist local_domains = {local_domain}
domainlist remote_domains = {remote_domains}
never_users = root
keep_environment =
host_lookup =
rfc1413_hosts =
acl_smtp_rcpt = acl_check_rcpt

begin acl
acl_check_rcpt:
  deny    message = 5.1.1 lab policy: no mail for this address
          domains = +local_domains
          local_parts = ^reject
  deny    message = relay not permitted
          !domains = +local_domains : +remote_domains
  accept

begin routers
fake_mx:
  driver = manualroute
  domains = +remote_domains
  route_list = * 127.0.0.1
  self = send
  transport = remote_smtp
local_maildir:
  driver = accept
  domains = +local_domains
  transport = maildir

begin transports
remote_smtp:
  driver = smtp
  port = {mx_port}
  hosts_avoid_tls = *
  allow_localhost
maildir:
  driver = appendfile
  directory = {lab}/mail/Maildir
  maildir_format
  create_directory
  delivery_date_add
  envelope_to_add
  return_path_add
  user = {exim_user}
  group = {exim_user}
  mode = 0644

begin retry
*  *  {retry_rule}
"""


class EximLab:
    """A private Exim daemon; see the module docstring for its routing and namespace."""

    def __init__(
        self,
        *,
        mx_port: int,
        root: Path | None = None,
        smtp_port: int | None = None,
        retry_rule: str = "F,20s,5s",
        queue_interval: int = 2,
        hostname: str = HOSTNAME,
        keep: bool = False,
        lab_dir: Path | None = None,
    ) -> None:
        self.exim_root: Final = root or exim_root()
        self.exim: Final = exim_binary(self.exim_root)
        self.mx_port: Final = mx_port
        self.smtp_port: Final = smtp_port if smtp_port is not None else free_loopback_port()
        self.retry_rule: Final = retry_rule
        self.queue_interval: Final = queue_interval
        self.hostname: Final = hostname
        self.keep = keep
        self._lab_dir = lab_dir
        self.lab = Path()
        self._daemon: subprocess.Popen[bytes] | None = None

    # -- paths -----------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.lab / "exim.conf"

    @property
    def log_path(self) -> Path:
        return self.lab / "log/mainlog"

    @property
    def maildir_path(self) -> Path:
        return self.lab / "mail/Maildir"

    # -- set-up ----------------------------------------------------------------------------

    def config(self) -> str:
        return CONFIG.format(
            hostname=self.hostname,
            local_domain=LOCAL_DOMAIN,
            remote_domains=" : ".join(REMOTE_DOMAINS),
            exim=self.exim,
            lab=self.lab,
            smtp_port=self.smtp_port,
            mx_port=self.mx_port,
            exim_user=EXIM_USER,
            retry_rule=self.retry_rule,
        )

    def _identity(self) -> tuple[int, int]:
        """The uid and gid of Debian-exim: the machine's, else a free pair added to the copies
        of /etc/passwd and /etc/group the namespace mounts."""
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        users = {f[0]: f for f in (line.split(":") for line in passwd.splitlines()) if len(f) > 3}
        groups = {f[0]: f for f in (line.split(":") for line in group.splitlines()) if len(f) > 2}
        if EXIM_USER in users and EXIM_USER in groups:
            uid, gid = int(users[EXIM_USER][2]), int(groups[EXIM_USER][2])
        else:
            taken = {int(f[2]) for f in users.values()} | {int(f[2]) for f in groups.values()}
            uid = gid = next(n for n in range(1999, 60000) if n not in taken)
            passwd += f"{EXIM_USER}:x:{uid}:{gid}::/nonexistent:/usr/sbin/nologin\n"
            group += f"{EXIM_USER}:x:{gid}:\n"
        (self.lab / "etc/passwd").write_text(passwd)
        (self.lab / "etc/group").write_text(group)
        return uid, gid

    def prepare(self) -> None:
        if not self.exim.is_file():
            raise LabError(f"{self.exim} not found: .ci/run unpacks Debian's exim4 there")
        if self._lab_dir is None:
            self.lab = Path(tempfile.mkdtemp(prefix="mtalens-exim-lab-", dir="/tmp"))
        else:
            self.lab = self._lab_dir
            shutil.rmtree(self.lab, ignore_errors=True)
            self.lab.mkdir(parents=True)
        os.chmod(self.lab, 0o755)  # pitfall 2
        for d in ("etc", "spool", "log", "mail"):
            (self.lab / d).mkdir()
        uid, gid = self._identity()
        for d in ("spool", "log", "mail"):
            os.chown(self.lab / d, uid, gid)
            os.chmod(self.lab / d, 0o750)
        # ld.so ignores LD_LIBRARY_PATH for a setuid binary: libidn12's directory goes into a
        # private ld.so.cache (ldconfig(8) -C/-f) with the machine's own directories
        lib = self.exim_root / "root" / LIB_DIR
        conf = self.lab / "etc/ld.so.conf"
        conf.write_text(f"{lib}\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n")
        subprocess.run(
            ["ldconfig", "-C", str(self.lab / "etc/ld.so.cache"), "-f", str(conf)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        # Exim refuses a configuration file that is group- or world-writable
        self.config_path.write_text(self.config())
        os.chmod(self.config_path, 0o644)

    def _namespaced(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run in a private mount namespace with the lab's passwd, group and
        ld.so.cache bind-mounted over the machine's."""
        etc = self.lab / "etc"
        mounts = " && ".join(
            f"mount --bind {etc / name} /etc/{name}" for name in ("passwd", "group", "ld.so.cache")
        )
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f'{mounts} && exec "$@"', "exim-lab", *argv]  # fmt: skip

    def exim_command(self, *args: str) -> list[str]:
        return self._namespaced([str(self.exim), "-C", str(self.config_path), *args])

    def run(self, *args: str, input: bytes | None = None, timeout: float = 60.0) -> str:
        """One Exim command (``-qff``, ``-bp``, ...) against the lab's configuration."""
        proc = subprocess.run(
            self.exim_command(*args), input=input, capture_output=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        out = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace")
            raise LabError(f"exim {' '.join(args)} exited {proc.returncode}\n{out}\n{err}")
        return out

    def start(self) -> EximLab:
        self.prepare()
        with open(self.lab / "daemon.err", "wb") as err:  # the child keeps its own descriptor
            self._daemon = subprocess.Popen(
                self.exim_command("-bdf", f"-q{self.queue_interval}s"),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        self._wait_listening(timeout=30.0)
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._daemon is not None and self._daemon.poll() is not None:
                break
            try:
                with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=5) as smtp:
                    smtp.noop()
                return
            except OSError as exc:
                last = exc
                time.sleep(0.2)
        err = (self.lab / "daemon.err").read_text(errors="replace")
        raise LabError(f"exim did not answer on port {self.smtp_port}: {last}\n{err}\n"
                       f"{self.log_text()}{self.panic_text()}")  # fmt: skip

    def stop(self) -> None:
        """Stop the daemon and remove the lab directory (unless ``keep``)."""
        self.stop_daemon()
        if not self.keep and self.lab != Path() and self.lab.is_dir():
            shutil.rmtree(self.lab, ignore_errors=True)

    def stop_daemon(self) -> None:
        """Stop the daemon; its log, spool and Maildir stay."""
        proc, self._daemon = self._daemon, None
        if proc is not None and proc.poll() is None:
            # the daemon's SIGTERM handler closes its sockets and exits (spec "Stopping the
            # daemon"); children it forked for deliveries finish on their own
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- mail ------------------------------------------------------------------------------

    def send(
        self,
        sender: str,
        rcpts: Sequence[str],
        subject: str,
        body: str,
        headers: Mapping[str, str] | None = None,
    ) -> SendResult:
        """Submit one message over SMTP; refused recipients are reported, not raised. The
        queue id is Exim's message id from its ``250 OK id=...`` reply to the data."""
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
        text = reply.decode("ascii", "replace")
        qid = text.split("id=", 1)[1].split()[0] if "id=" in text else None
        return SendResult(queue_id=qid, refused=refused)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def panic_text(self) -> str:
        try:
            return (self.lab / "log/paniclog").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def queue_ids(self) -> list[str]:
        """The message ids still on the queue: the third word of each message's first line in
        ``exim -bpr`` (``age size id <sender>``)."""
        ids = []
        for line in self.run("-bpr").splitlines():
            words = line.split()
            if len(words) >= 4 and line[:1] == " " and words[2].count("-") == 2:
                ids.append(words[2])
        return ids

    def __enter__(self) -> EximLab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
