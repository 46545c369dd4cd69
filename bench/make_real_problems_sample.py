"""Produce golden input from a real Postfix that runs into every problem `mtalens diagnose` knows.

Runs tests/lab/problem_lab.py (Debian's Postfix 3.7 on loopback, Cyrus SASL, fake MX hosts on
several loopback addresses, nsd for DNS; see its docstring) once, waits until the queue is
empty, and writes ``sample_logs/postfix/real-problems-3.7.log``: the maillog, anonymised the way
bench/make_real_postfix_sample.py does it (lab temp paths become Debian's standard paths, the
machine's hostname becomes ``mx1.example.net``) and with each fake MX's random port replaced by
a fixed one (``STABLE_PORTS``), so the file reads the same from run to run except for pids,
queue ids and times. The loopback block is fixed (127.10.0.0/24);
tests/test_diagnose_real_postfix.py checks diagnose's findings on this file.

Needs root (ports 25 and 53 on loopback addresses) and Debian's postfix, sasl2-bin and nsd.
Usage: ``.venv/bin/python bench/make_real_problems_sample.py`` (about a minute), then
``.venv/bin/python -m pytest tests/test_golden_postfix.py --update-golden -k real-problems``.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lab.problem_lab import LoopbackBlock, ProblemRun, run_problems  # noqa: E402 (sys.path above)

BLOCK = LoopbackBlock("127.10.0")
# Fake MX role -> the port written into the sample instead of the random one.
STABLE_PORTS = {"main": 2525, "tls": 2521, "plain": 2522, "rate": 2528, "slow": 2532, "loop": 25}


def anonymise(run: ProblemRun) -> str:
    text = run.log
    for path, new in sorted(run.lab_paths.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(path, new)
    for role, port in run.mx_ports.items():
        if port != STABLE_PORTS[role]:
            text = re.sub(rf"\]:{port}\b", f"]:{STABLE_PORTS[role]}", text)
    host = socket.gethostname()
    if host and host not in {"mx1", "mx1.example.net", "localhost"}:
        text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "mx1.example.net", text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "sample_logs", help="sample_logs dir")
    args = parser.parse_args()
    log_out: Path = args.out / "postfix" / "real-problems-3.7.log"
    with tempfile.TemporaryDirectory(prefix="mtalens-problems-") as tmp:
        run = run_problems(Path(tmp), BLOCK)
    log_out.parent.mkdir(parents=True, exist_ok=True)
    log_out.write_text(anonymise(run), encoding="utf-8")
    print(f"{log_out}: {run.log.count(chr(10))} lines ({len(run.dsns)} DSNs not kept)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
