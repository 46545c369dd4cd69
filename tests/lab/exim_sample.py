"""Record sample_logs/exim/real-exim-4.96.log from a real Exim 4.96 (Debian's exim4-daemon-light).

Not a test: a script that produced the sample once, kept so it can be produced again. Debian's
exim4 conflicts with postfix, so it is unpacked, not installed::

    mkdir /tmp/exim && cd /tmp/exim
    apt-get download exim4-base exim4-config exim4-daemon-light libidn12
    for f in *.deb; do dpkg -x $f root; done
    .venv/bin/python -m tests.lab.exim_sample /tmp/exim   # as root: needs unshare -m

The binary looks its ``Debian-exim`` user up at start-up, so the script runs Exim in a private
mount namespace (``unshare -m``) with /etc/passwd and /etc/group bind-mounted from copies that
add that user, and /etc/ld.so.cache from one that also lists libidn12's unpacked directory;
nothing on the machine changes. Exim reads SMTP on its standard input (``-bs``)
as if from 192.0.2.10 (``-oMa``, allowed to root, Exim spec chapter "The Exim command line"),
delivers at once (``-odi``) to tests/lab/fake_mx.py on 127.0.0.1 (250, 550 5.1.1, 552 5.2.2,
450 4.2.0 by recipient) or to a local file, and logs with ``log_selector = +queue_time
+deliver_time +received_recipients +smtp_connection`` (spec chapter "Log files", section
"Reducing or increasing what is logged"). The retry rule ``F,1m,15s`` (spec chapter "Retry
configuration") gives the deferred recipient up after a minute: a queue run (``-qff``) then
fails it with "retry timeout exceeded" and Exim sends its bounce to the local sender.
The log keeps Exim's own format (``log_file_path``), with the real message ids and times.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.lab.fake_mx import FakeMX

CONFIG = """
primary_hostname = mx1.example.test
qualify_domain = example.test
exim_path = {root}/exim4-wrap
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
log_selector = +queue_time +deliver_time +received_recipients +smtp_connection
domainlist local_domains = example.test
never_users = root
keep_environment =
host_lookup =
rfc1413_hosts =
acl_smtp_rcpt = acl_check_rcpt

begin acl
acl_check_rcpt:
  deny    message = relay not permitted
          !domains = +local_domains : remote.test
  accept

begin routers
fake_mx:
  driver = manualroute
  domains = remote.test
  route_list = * 127.0.0.1
  self = send
  transport = remote_smtp
local_user:
  driver = accept
  domains = +local_domains
  local_parts = alice : bob
  transport = local_file

begin transports
remote_smtp:
  driver = smtp
  port = {port}
  hosts_avoid_tls = *
  allow_localhost
local_file:
  driver = appendfile
  file = {root}/mail/$local_part_data
  user = Debian-exim
  group = Debian-exim
  mode = 0666

begin retry
*  *  F,1m,15s
"""

SESSION_1 = [
    "EHLO client.example",
    "MAIL FROM:<bob@example.test>",
    "RCPT TO:<ok1@remote.test>",
    "RCPT TO:<ok2@remote.test>",
    "RCPT TO:<unknown1@remote.test>",
    "RCPT TO:<full1@remote.test>",
    "RCPT TO:<defer1@remote.test>",
    "RCPT TO:<alice@example.test>",
    "RCPT TO:<someone@elsewhere.test>",
    "DATA",
    "From: bob@example.test\r\nSubject: lab 1\r\nMessage-ID: <lab1@client.example>\r\n\r\nhello\r\n.",
    "QUIT",
]
SESSION_2 = [
    "HELO [192.0.2.11]",
    "MAIL FROM:<>",
    "RCPT TO:<nobody@elsewhere.test>",
    "QUIT",
]


def _smtp(root: Path, lines: list[str], client_ip: str) -> None:
    subprocess.run(
        [f"{root}/exim4-wrap", "-C", f"{root}/exim.conf", "-bs", "-odi", "-oMa", client_ip],
        input="".join(line + "\r\n" for line in lines).encode(),
        capture_output=True,
        check=True,
        timeout=60,
    )


def _inside(root: Path) -> None:
    exim = [f"{root}/exim4-wrap", "-C", f"{root}/exim.conf"]
    with FakeMX() as mx:
        (root / "exim.conf").write_text(CONFIG.format(root=root, port=mx.port))
        _smtp(root, SESSION_1, "192.0.2.10")
        _smtp(root, SESSION_2, "192.0.2.11")
        # a local submission (no H=, U=root, P=local)
        subprocess.run(
            [*exim, "-odi", "-f", "root@example.test", "alice@example.test"],
            input=b"Subject: lab 2\n\nlocal\n",
            check=True,
            timeout=60,
        )
        time.sleep(20)
        subprocess.run([*exim, "-qff"], check=True, timeout=60)  # a retry: deferred again
        time.sleep(50)
        subprocess.run([*exim, "-qff"], check=True, timeout=60)  # past 1m: retry timeout
        time.sleep(2)


def main(root: Path) -> None:
    if os.environ.get("MTALENS_EXIM_INSIDE") == "1":
        _inside(root)
        return
    for d in ("spool", "log", "mail", "etc"):
        shutil.rmtree(root / d, ignore_errors=True)
        (root / d).mkdir()
    lib = root / "root/usr/lib/x86_64-linux-gnu"
    (root / "exim4-wrap").write_text(
        f'#!/bin/sh\nLD_LIBRARY_PATH={lib} exec {root}/root/usr/sbin/exim4 "$@"\n'
    )
    (root / "exim4-wrap").chmod(0o755)
    # exim4 is setuid root: ld.so then ignores LD_LIBRARY_PATH in the processes Exim re-executes
    # as Debian-exim, so libidn12's directory goes into a private ld.so.cache instead
    (root / "etc/ld.so.conf").write_text(
        f"{lib}\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n"
    )
    subprocess.run(
        ["ldconfig", "-C", f"{root}/etc/ld.so.cache", "-f", f"{root}/etc/ld.so.conf"], check=True
    )
    passwd = Path("/etc/passwd").read_text() + "Debian-exim:x:1999:1999::/nonexistent:/bin/false\n"
    group = Path("/etc/group").read_text() + "Debian-exim:x:1999:\n"
    (root / "etc/passwd").write_text(passwd)
    (root / "etc/group").write_text(group)
    for d in ("spool", "log", "mail"):
        os.chown(root / d, 1999, 1999)
    (root / "mail").chmod(0o777)
    script = (
        f"mount --bind {root}/etc/passwd /etc/passwd && mount --bind {root}/etc/group /etc/group"
        f" && mount --bind {root}/etc/ld.so.cache /etc/ld.so.cache"
        f" && MTALENS_EXIM_INSIDE=1 exec {sys.executable} -m tests.lab.exim_sample {root}"
    )
    subprocess.run(["unshare", "-m", "sh", "-c", script], check=True)
    print((root / "log/mainlog").read_text(), end="")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
