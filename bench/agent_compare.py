"""Paired comparison of `continualcode bench agent --out` reports, as a markdown table.

    python bench/agent_compare.py LABEL=REPORT.json LABEL=REPORT.json [...] [--range 25-48]

Every report is compared with the first on the tasks all of them hold (`--range A-B`: only the
first report's tasks A to B, counted from 1). Per report: resolved, tasks gained and lost against
the first, and the exact sign test's two-sided p on the gained/lost split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from continualcode.evals.agent_compare import compare, shared_tasks


def labelled(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=REPORT.json, got {text!r}")
    return label, Path(path)


def task_range(text: str) -> tuple[int, int]:
    try:
        start, end = (int(part) for part in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B (task positions from 1), got {text!r}") from None
    if not 1 <= start <= end:
        raise argparse.ArgumentTypeError(f"expected 1 <= A <= B, got {text!r}")
    return start, end


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=labelled, metavar="LABEL=REPORT.json")
    parser.add_argument("--range", type=task_range, default=None, help="the first report's tasks A-B only")
    args = parser.parse_args(argv)
    reports = {label: json.loads(path.read_text()) for label, path in args.reports}
    ids = shared_tasks(list(reports.values()))
    if args.range:
        first = [t["id"] for t in next(iter(reports.values()))["tasks"]][args.range[0] - 1: args.range[1]]
        shared = set(ids)
        ids = [i for i in first if i in shared]
    try:
        ids, rows = compare(reports, ids)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print(f"{len(ids)} tasks: {ids[0]} … {ids[-1]}" if ids else "no shared tasks")
    print("| report | resolved | gained vs first | lost vs first | sign test p |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.label} | {row.resolved} / {len(ids)} | {len(row.gained)} | {len(row.lost)} | "
              f"{row.p_value:.2g} |")
    for row in rows[1:]:
        for name, tasks in (("gained", row.gained), ("lost", row.lost)):
            if tasks:
                print(f"{row.label} {name}: {', '.join(tasks)}")


if __name__ == "__main__":
    main()
