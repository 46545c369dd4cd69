"""A real authoritative DNS server (Debian's ``nsd``) on 127.0.0.1, serving zone files a test
writes. nsd runs in the foreground (``-d``) as the current user, with no chroot, no database file
and no remote control, so it needs no systemd and no setup beyond the package (nsd.conf(5)).

    with NsdServer(tmp_path, {"example.test": ZONE_TEXT}) as server:
        make_resolver(["127.0.0.1"], port=server.port)
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.query
import dns.rcode


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (DNS needs both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def _soa_serial(text: str) -> int:
    m = re.search(r"\bSOA\s+\S+\s+\S+\s+(\d+)", text)
    if m is None:
        raise ValueError("zone text without an SOA record")
    return int(m.group(1))


class NsdServer:
    def __init__(self, workdir: Path, zones: dict[str, str], *, binary: str = "nsd") -> None:
        self.workdir = workdir
        self.zones = zones
        self.binary = binary
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            "server:",
            "  ip-address: 127.0.0.1",
            f"  port: {self.port}",
            '  username: ""',
            '  chroot: ""',
            f'  zonesdir: "{self.workdir}"',
            '  database: ""',
            f'  pidfile: "{self.workdir}/nsd.pid"',
            f'  xfrdfile: "{self.workdir}/xfrd.state"',
            f'  zonelistfile: "{self.workdir}/zone.list"',
            "  server-count: 1",
            "  verbosity: 1",
            "remote-control:",
            "  control-enable: no",
        ]
        for name, text in self.zones.items():
            zonefile = f"{name}.zone"
            (self.workdir / zonefile).write_text(text, encoding="utf-8")
            lines += ["zone:", f"  name: {name}", f"  zonefile: {zonefile}"]
        conf = self.workdir / "nsd.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    def _answers(self) -> bool:
        first = next(iter(self.zones))
        query = dns.message.make_query(first + ".", "SOA")
        try:
            response = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
        except (dns.exception.Timeout, OSError):
            return False
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)

    def start(self) -> NsdServer:
        last_log = ""
        for _ in range(3):  # the free port can be taken between the probe and nsd's bind
            self.port = free_port()
            conf = self._write_config()
            log = self.workdir / "nsd.log"
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(
                    [self.binary, "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._answers():
                    return self
                time.sleep(0.05)
            self.stop()
            last_log = log.read_text(errors="replace")
        raise RuntimeError(f"nsd did not start:\n{last_log}")

    def _serial(self, name: str) -> int | None:
        query = dns.message.make_query(name + ".", "SOA")
        try:
            response = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
        except (dns.exception.Timeout, OSError):
            return None
        for rrset in response.answer:
            for rd in rrset:
                return int(rd.serial)
        return None

    def update(self, zones: dict[str, str]) -> None:
        """Rewrite the zone files and reload them (SIGHUP: nsd(8) re-reads zone files whose mtime
        changed), on the same port; returns once every zone serves its new SOA serial (give each
        changed zone a higher serial)."""
        assert self.proc is not None and set(zones) <= set(self.zones)
        self.zones = {**self.zones, **zones}
        for name, text in zones.items():
            path = self.workdir / f"{name}.zone"
            path.write_text(text, encoding="utf-8")
            st = path.stat()  # a rewrite within the same second must still look changed
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        want = {name: _soa_serial(text) for name, text in zones.items()}
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(self._serial(n) == serial for n, serial in want.items()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nsd did not serve the new zones {sorted(want)}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> NsdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
