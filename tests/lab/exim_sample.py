"""Record sample_logs/exim/real-exim-4.96.log from a real Exim 4.96 (Debian's exim4-daemon-light).

Not a test: a script that produced the sample once, kept so it can be produced again. It runs in
the environment of tests/lab/exim_lab.py (the unpacked packages of ``.ci/unpack-exim.sh``, a
private mount namespace with a ``Debian-exim`` user and a private ld.so.cache; see that module)
with a configuration of its own, as root::

    .ci/unpack-exim.sh                                   # once: /opt/mtalens-ci/exim
    .venv/bin/python -m tests.lab.exim_sample /tmp/exim  # the log on stdout

Instead of the lab's daemon, Exim reads SMTP on its standard input (``-bs``) as if from
192.0.2.10 (``-oMa``, allowed to root, Exim spec chapter "The Exim command line"), delivers at
once (``-odi``) to tests/lab/fake_mx.py on 127.0.0.1 (250, 550 5.1.1, 552 5.2.2, 450 4.2.0 by
recipient) or to a local file, and logs with ``log_selector = +queue_time +deliver_time
+received_recipients +smtp_connection`` (spec chapter "Log files", section "Reducing or
increasing what is logged"). The retry rule ``F,1m,15s`` (spec chapter "Retry configuration")
gives the deferred recipient up after a minute: a queue run (``-qff``) then fails it with "retry
timeout exceeded" and Exim sends its bounce to the local sender. The log keeps Exim's own format
(``log_file_path``), with the real message ids and times.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.lab.exim_lab import EximLab
from tests.lab.fake_mx import FakeMX

CONFIG = """
primary_hostname = mx1.example.test
qualify_domain = example.test
exim_path = {exim}
spool_directory = {lab}/spool
log_file_path = {lab}/log/%slog
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
  file = {lab}/mail/$local_part_data
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


def _smtp(lab: EximLab, lines: list[str], client_ip: str) -> None:
    lab.run("-bs", "-odi", "-oMa", client_ip,
            input="".join(line + "\r\n" for line in lines).encode())  # fmt: skip


def main(root: Path) -> None:
    with FakeMX() as mx:
        lab = EximLab(mx_port=mx.port, lab_dir=root, keep=True)
        lab.prepare()  # the namespace's files; no daemon: each command is one Exim process
        lab.config_path.write_text(CONFIG.format(exim=lab.exim, lab=lab.lab, port=mx.port))
        (lab.lab / "mail").chmod(0o777)  # the local_file transport's files, mode 0666
        _smtp(lab, SESSION_1, "192.0.2.10")
        _smtp(lab, SESSION_2, "192.0.2.11")
        # a local submission (no H=, U=root, P=local)
        lab.run("-odi", "-f", "root@example.test", "alice@example.test",
                input=b"Subject: lab 2\n\nlocal\n")  # fmt: skip
        time.sleep(20)
        lab.run("-qff")  # a retry: deferred again
        time.sleep(50)
        lab.run("-qff")  # past 1m: retry timeout
        time.sleep(2)
    print(lab.log_text(), end="")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
