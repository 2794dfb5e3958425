"""Unit cost, side by side: the baseline commit (before issue 14) and the working tree, in
one run, on SQLite and PostgreSQL (issue 14 items 1-3).

For each tree, bench/unitcost_probe.py runs in its own process with that tree first on its
path and reports the CPU of a polling-trigger call (30 and 100 items; answered from the
journal, and through a refresh), its statements and transactions, and the worker's CPU,
statements and transactions per refresh. The baseline is unpacked with `git archive` into a
temporary folder (never copied into the repository). The action's overhead over a direct
upstream call is bench/bench_overhead.py (also side by side).

The trigger's CPU is the WSGI application's own (environ to answer); the same call through
Flask's test client, as earlier rounds measured it, is printed beside it.

CPU, not wall time: the machine is shared, so read the ratio of the two columns of one run
(each tree runs --rounds times, alternating; each figure is its least disturbed run).

    .venv/bin/python bench/bench_unitcost.py [--calls N] [--watches N] [--rounds N] [--baseline COMMIT] [--no-postgres]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

from harness import FakeProcess, ROOT, baseline_tree, postgres_cluster

FIGURES = [  # (key, label, target)
    ("trigger_journal_30", "trigger, journal, 30 items", "cpu<=2"),
    ("trigger_journal_100", "trigger, journal, 100 items", "cpu<=3"),
    ("trigger_refresh_30", "trigger, refresh, 30 items", "cpu<=2"),
    ("trigger_refresh_100", "trigger, refresh, 100 items", "cpu<=3"),
    ("worker_refresh", "worker, per refresh", "cpu<=2"),
]


def probe(tree: str, database: str, fake: str, args) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "unitcost_probe.py"), "--root", tree,
                          "--database", database, "--fake", fake, "--calls", str(args.calls),
                          "--watches", str(args.watches)],
                         cwd=tree, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"probe failed on {tree}:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rounds(trees: dict, database, fake: str, args) -> dict:
    """`--rounds` runs of each tree, alternating (baseline, now, baseline, ...) so both see the
    same machine; per figure the least disturbed run (lowest CPU) counts."""
    runs = {side: [] for side in trees}
    for n in range(args.rounds):
        for side, tree in trees.items():
            runs[side].append(probe(tree, database(side, n), fake, args))
    return {side: {key: min((run[key] for run in found), key=lambda figure: figure["cpu_ms"])
                   for key in found[0]} for side, found in runs.items()}


def table(name: str, before: dict, after: dict) -> None:
    print(f"\n{name}: CPU ms (median per call) | statements | transactions   baseline -> now")
    print("(trigger CPU: the WSGI application's; in brackets through Flask's test client, as earlier rounds measured)")
    print(f"{'':30}{'CPU base':>10}{'CPU now':>9}{'ratio':>7}{'test client':>18}{'stmts':>12}{'txns':>10}  target")
    for key, label, target in FIGURES:
        b, a = before[key], after[key]
        client = f"[{b['client_cpu_ms']:.2f}->{a['client_cpu_ms']:.2f}]" if "client_cpu_ms" in a else ""
        print(f"{label:30}{b['cpu_ms']:>10.2f}{a['cpu_ms']:>9.2f}{a['cpu_ms'] / b['cpu_ms']:>7.2f}{client:>18}"
              f"{b['statements']:>6.0f}->{a['statements']:<4.0f}{b['transactions']:>5.0f}->{a['transactions']:<4.0f}"
              f"  {target} ms" + (", <=2 txns" if key.startswith("trigger") else ""))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--watches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default="e4e027f")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    fake = FakeProcess()
    fake.control("keys", {"key": "bench-key", "credits": None})
    try:
        with baseline_tree(args.baseline) as base, tempfile.TemporaryDirectory(prefix="unitcost-") as folder:
            trees = {"baseline": base, "now": str(ROOT)}
            results = rounds(trees, lambda side, n: f"sqlite:///{folder}/{side}{n}.db", fake.url, args)
            table(f"SQLite (baseline {args.baseline})", results["baseline"], results["now"])
            if args.no_postgres:
                return
            with postgres_cluster() as pg:
                if pg is None:
                    print("\nPostgreSQL not found: its column is skipped")
                    return
                results = rounds(trees, lambda side, n: pg.database(f"{side}{n}"), fake.url, args)
                table(f"PostgreSQL (baseline {args.baseline})", results["baseline"], results["now"])
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
