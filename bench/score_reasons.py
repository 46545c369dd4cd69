"""Score the classifier against Sisimai's labelled corpus and time it.

    .venv/bin/python bench/score_reasons.py [--corpus PATH] [--worst N] [--min-agreement 0.93]

For each row with ``bounce: true`` it calls ``classify(status=, reply_code=, diagnostic=,
action=)`` and compares with the row's ``reason`` and ``hard``. Prints overall agreement, the
per-reason confusion (label -> ours), the rules that decided, the worst rows and the cost per call.
The labels are a reference, not the truth (see KNOWN_LABEL_DISAGREEMENTS below).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtalens.pipeline.classify import Classifier, default_classifier

DEFAULT_CORPUS = Path("/work/shared/corpus/bounces/sisimai/expected.jsonl")

# Rows where we are confident the reference label is wrong (diagnostic prefix -> our reason, why).
KNOWN_LABEL_DISAGREEMENTS: dict[str, tuple[str, str]] = {
    "mailfrom domain is listed in spamhaus": (
        "blocked",
        "the reply names a Spamhaus listing of the sender, not an unknown user",
    ),
    "email rejected due to security policies - mcspamsignature": (
        "spamdetected",
        "Mimecast's MCSpamSignature is a spam signature, not a virus",
    ),
    "was considered unsolicited bulk e-mail (ube)": (
        "spamdetected",
        "amavisd's UBE notice reports spam; nothing in it is about RFC compliance",
    ),
    "access denied, sending domain": (
        "authfailure",
        "Microsoft 5.7.515: the sending domain fails the required SPF/DKIM/DMARC level",
    ),
}


def _code(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _args(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": row.get("status") or None,
        "reply_code": _code(row.get("reply_code")),
        "diagnostic": row.get("diagnostic") or None,
        "action": row.get("action") or None,
    }


def load_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [r for r in rows if r.get("bounce")]


def score(clf: Classifier, rows: list[dict[str, Any]]) -> dict[str, Any]:
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    rules: Counter[str] = Counter()
    wrong: list[tuple[dict[str, Any], str, str]] = []
    reason_ok = hard_ok = 0
    for row in rows:
        got = clf.classify(**_args(row))
        rules[got.rule_id] += 1
        confusion[row["reason"]][got.reason] += 1
        if got.reason == row["reason"]:
            reason_ok += 1
        else:
            wrong.append((row, got.reason, got.rule_id))
        if bool(got.hard) == bool(row.get("hard")):
            hard_ok += 1
    n = len(rows)
    return {
        "n": n,
        "reason_agreement": reason_ok / n if n else 0.0,
        "hard_agreement": hard_ok / n if n else 0.0,
        "confusion": confusion,
        "rules": rules,
        "wrong": wrong,
    }


def time_per_call(clf: Classifier, rows: list[dict[str, Any]], rounds: int = 5) -> float:
    calls = [_args(r) for r in rows]
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for kw in calls:
            clf.classify(**kw)
        best = min(best, (time.perf_counter() - t0) / len(calls))
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--worst", type=int, default=25)
    ap.add_argument("--min-agreement", type=float, default=0.0)
    ap.add_argument("--max-us", type=float, default=0.0)
    ns = ap.parse_args(argv)

    clf = default_classifier()
    rows = load_rows(ns.corpus)
    res = score(clf, rows)
    us = time_per_call(clf, rows)

    print(f"rows (bounce: true): {res['n']}")
    print(f"reason agreement:    {res['reason_agreement']:.4f}")
    print(f"hard agreement:      {res['hard_agreement']:.4f}")
    print(f"cost per call:       {us:.2f} us (best of 5 passes over the corpus)")
    print()
    print("per-reason confusion (label -> ours), only labels with disagreements:")
    for label, ours in sorted(res["confusion"].items()):
        total = sum(ours.values())
        ok = ours.get(label, 0)
        if ok == total:
            continue
        others = ", ".join(f"{r}:{c}" for r, c in ours.most_common() if r != label)
        print(f"  {label:16s} {ok:3d}/{total:<3d}  -> {others}")
    print()
    print("known label disagreements (we believe the label is wrong):")
    for prefix, (ours, why) in KNOWN_LABEL_DISAGREEMENTS.items():
        hits = sum(1 for row, _, _ in res["wrong"] if prefix in (row["diagnostic"] or "").lower())
        print(f"  {hits:2d} rows {prefix!r}: ours {ours} ({why})")
    print()
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row, got, rid in res["wrong"]:
        groups[(row["reason"], got, rid)].append(row)
    print(f"worst rows (grouped label -> ours [rule], top {ns.worst}):")
    for (label, got, rid), grp in sorted(groups.items(), key=lambda kv: -len(kv[1]))[: ns.worst]:
        row = grp[0]
        diag = " ".join((row["diagnostic"] or "").split())[:150]
        print(
            f"  x{len(grp):<2d} {label} -> {got} [{rid}] {row['path']} st={row['status']}: {diag}"
        )

    failed = False
    if ns.min_agreement and res["reason_agreement"] < ns.min_agreement:
        print(f"FAIL: agreement below {ns.min_agreement}")
        failed = True
    if ns.max_us and us > ns.max_us:
        print(f"FAIL: {us:.2f} us per call above {ns.max_us}")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
