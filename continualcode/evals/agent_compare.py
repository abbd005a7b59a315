"""Paired comparison of `bench agent` reports on the tasks they share.

A `--learn` run and a `--no-learn` run (or two seeds) answer the same tasks, so the fair question
is per task: which did one resolve and the other not. The discordant tasks decide it; the exact
two-sided sign test on them (McNemar's exact test) says how often a split at least that uneven
comes from coin flips alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb


@dataclass(frozen=True)
class Paired:
    label: str
    resolved: int
    gained: list[str]
    """Tasks this report resolved and the first report did not."""
    lost: list[str]
    """Tasks the first report resolved and this one did not."""

    @property
    def p_value(self) -> float:
        return sign_test(len(self.gained), len(self.lost))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of wins vs losses at p = 1/2 (1.0 when there is nothing to test)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def shared_tasks(reports: list[dict]) -> list[str]:
    """The task ids every report holds, in the first report's order."""
    held = [{t["id"] for t in report["tasks"]} for report in reports]
    return [t["id"] for t in reports[0]["tasks"] if all(t["id"] in ids for ids in held)]


def compare(reports: dict[str, dict], tasks: list[str] | None = None) -> tuple[list[str], list[Paired]]:
    """Each report against the first, over `tasks` (default: every shared task)."""
    if len(reports) < 2:
        raise ValueError("compare needs two reports or more")
    labels = list(reports)
    ids = shared_tasks(list(reports.values())) if tasks is None else tasks
    outcome = {label: {t["id"]: bool(t["resolved"]) for t in report["tasks"]} for label, report in reports.items()}
    missing = [(label, i) for label in labels for i in ids if i not in outcome[label]]
    if missing:
        raise ValueError(f"{missing[0][0]} has no result for {missing[0][1]}")
    first = outcome[labels[0]]
    rows = [Paired(label, sum(outcome[label][i] for i in ids),
                   [i for i in ids if outcome[label][i] and not first[i]],
                   [i for i in ids if first[i] and not outcome[label][i]]) for label in labels]
    return ids, rows
