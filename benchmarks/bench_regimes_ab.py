#!/usr/bin/env python
"""The regimes' speed before and after a change, measured in one run: bench_regimes.py on two checkouts,
alternated so that the machine's load falls on both alike.

    python benchmarks/bench_regimes_ab.py --base 974a908 [--rounds 3] [--quick] [--out benchmarks/results/FILE.json]

A temporary git worktree holds `--base`; the current bench_regimes.py runs in both trees (so both measure the
same thing), each in its own process. Per regime it reports the median gfsgd time per config-step of each tree
and their ratio after / before (1.0 = unchanged; the spread of the rounds says what noise is).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tree(tree: Path, quick: bool, out: Path) -> list:
    cmd = [sys.executable, str(tree / "benchmarks" / "bench_regimes.py"), "--json", str(out)] + (["--quick"] if quick else [])
    subprocess.run(cmd, check=True, cwd=tree, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the git revision to compare against (e.g. the commit before)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gfsgd-ab-"))
    base = tmp / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        shutil.copy(ROOT / "benchmarks" / "bench_regimes.py", base / "benchmarks" / "bench_regimes.py")
        times = {"before": {}, "after": {}}
        for r in range(args.rounds):
            for label, tree in (("before", base), ("after", ROOT)) if r % 2 == 0 else (("after", ROOT), ("before", base)):
                for row in run_tree(tree, args.quick, tmp / f"{label}{r}.json"):
                    times[label].setdefault(row["regime"], []).append(row["ours_s"])
                print(f"round {r + 1}/{args.rounds}: {label} done", flush=True)
        rows = []
        for regime in times["after"]:
            b, a = times["before"][regime], times["after"][regime]
            rows.append(dict(regime=regime, before_us=[x * 1e6 for x in b], after_us=[x * 1e6 for x in a],
                             median_before_us=statistics.median(b) * 1e6, median_after_us=statistics.median(a) * 1e6,
                             ratio_after_over_before=statistics.median(a) / statistics.median(b)))
            print(f"{regime:>10}: before {rows[-1]['median_before_us']:9.2f} us/config-step, after "
                  f"{rows[-1]['median_after_us']:9.2f}, after / before = {rows[-1]['ratio_after_over_before']:.3f} "
                  f"(rounds: before {', '.join(f'{x:.2f}' for x in rows[-1]['before_us'])}; after "
                  f"{', '.join(f'{x:.2f}' for x in rows[-1]['after_us'])})")
        if args.out:
            rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip()
            Path(args.out).write_text(json.dumps(dict(base=rev, rounds=args.rounds, quick=args.quick,
                                                      command=" ".join(["python", "benchmarks/bench_regimes_ab.py"]
                                                                       + (argv or sys.argv[1:])),
                                                      regimes=rows), indent=1))
        return rows
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
