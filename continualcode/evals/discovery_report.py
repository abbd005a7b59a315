"""discovery@k with bootstrapped confidence intervals, the summary table and the plot.

discovery@k for a method = the fraction of (problem, seed) runs whose first k
attempts include a pass. The confidence interval resamples SEEDS with
replacement (each resampled seed brings all its problems), 2,000 times, and
takes the 2.5th and 97.5th percentiles: the spread a rerun with other seeds
would show. With few seeds the interval is coarse (two seeds give at most
three distinct resamples); the table says how many seeds it rests on.
"""

from __future__ import annotations

import random
from pathlib import Path

BOOTSTRAP = 2000


def discovery_at(runs, k: int) -> float:
    if not runs:
        return float("nan")
    return sum(1 for r in runs if r.solved_at is not None and r.solved_at <= k) / len(runs)


def bootstrap_ci(runs, k: int, *, iterations: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of discovery@k over seed resamples."""
    by_seed: dict[int, list] = {}
    for run in runs:
        by_seed.setdefault(run.seed, []).append(run)
    seeds = sorted(by_seed)
    if not seeds:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    values = []
    for _ in range(iterations):
        sample = [run for s in rng.choices(seeds, k=len(seeds)) for run in by_seed[s]]
        values.append(discovery_at(sample, k))
    values.sort()
    return values[int(0.025 * (iterations - 1))], values[int(0.975 * (iterations - 1))]


def distinct_replies(runs) -> float | None:
    """Mean fraction of distinct replies per run of 2+ attempts: 1.0 = every attempt differed.

    A diagnostic for collapse: if learning sharpens the policy until every seed
    samples the same answer, extra attempts stop being extra tries.
    """
    fractions = [len({a.reply for a in r.attempts}) / len(r.attempts) for r in runs
                 if len(r.attempts) > 1 and all(a.reply for a in r.attempts)]
    return sum(fractions) / len(fractions) if fractions else None


def summarize(runs, budget: int, methods) -> dict:
    """Per method: discovery@1..budget with CIs, attempts used, and time per attempt (mean seconds)."""
    out: dict = {"budget": budget, "methods": {}}
    for method in methods:
        mine = [r for r in runs if r.method == method]
        attempts = [a for r in mine for a in r.attempts]
        n = max(1, len(attempts))
        generate = sum(a.generate_s for a in attempts) / n
        check = sum(a.check_s for a in attempts) / n
        learn = sum(a.learn_s for a in attempts) / n
        out["methods"][method] = {
            "runs": len(mine),
            "seeds": len({r.seed for r in mine}),
            "solved": sum(1 for r in mine if r.solved_at is not None),
            "discovery": [discovery_at(mine, k) for k in range(1, budget + 1)],
            "ci": [list(bootstrap_ci(mine, k)) for k in range(1, budget + 1)],
            "attempts": len(attempts),
            "seconds_per_attempt": {"total": generate + check + learn, "generate": generate,
                                    "check": check, "learn": learn},
            "rolled_back": sum(1 for a in attempts if a.learn and a.learn.get("rolled_back")),
            "distinct": distinct_replies(mine),
        }
    return out


def summary_table(summary: dict):
    from rich.table import Table

    budget = summary["budget"]
    table = Table(title=f"discovery@k (95% bootstrap CI over seeds), budget {budget}")
    table.add_column("method")
    for k in range(1, budget + 1):
        table.add_column(f"@{k}", justify="right")
    table.add_column("solved", justify="right")
    table.add_column("s/attempt (gen+check+learn)", justify="right")
    table.add_column("distinct replies", justify="right")
    for method, row in summary["methods"].items():
        cells = [f"{d:.2f} [{lo:.2f}, {hi:.2f}]" for d, (lo, hi) in zip(row["discovery"], row["ci"])]
        t = row["seconds_per_attempt"]
        table.add_row(method, *cells, f"{row['solved']}/{row['runs']}",
                      f"{t['total']:.1f} ({t['generate']:.1f}+{t['check']:.1f}+{t['learn']:.1f})",
                      _fraction(row.get("distinct")))
    return table


def markdown_table(summary: dict) -> str:
    """The same table as Markdown (for docs/discovery.md)."""
    budget = summary["budget"]
    head = "| method | " + " | ".join(f"discovery@{k}" for k in range(1, budget + 1)) \
        + " | solved runs | s/attempt (gen + check + learn) | distinct replies |"
    lines = [head, "|" + "---|" * (budget + 4)]
    for method, row in summary["methods"].items():
        cells = [f"{d:.2f} [{lo:.2f}, {hi:.2f}]" for d, (lo, hi) in zip(row["discovery"], row["ci"])]
        t = row["seconds_per_attempt"]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {row['solved']}/{row['runs']} | "
                     f"{t['total']:.1f} ({t['generate']:.1f} + {t['check']:.1f} + {t['learn']:.1f}) | "
                     f"{_fraction(row.get('distinct'))} |")
    return "\n".join(lines)


def _fraction(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def plot(summary: dict, path: Path) -> None:
    """discovery@k curves with their CI bands, one line per method."""
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = summary["budget"]
    ks = list(range(1, budget + 1))
    fig, ax = plt.subplots(figsize=(6, 4))
    methods = list(summary["methods"].items())
    for i, (method, row) in enumerate(methods):
        shift = (i - (len(methods) - 1) / 2) * 0.05  # equal curves stay visible side by side
        xs = [k + shift for k in ks]
        ax.plot(xs, row["discovery"], marker="o", label=f"{method} ({row['runs']} runs)")
        ax.fill_between(xs, [lo for lo, _ in row["ci"]], [hi for _, hi in row["ci"]], alpha=0.15)
    config = summary.get("config", {})
    ax.set_title(f"discovery@k · {config.get('model', '')} · {len(config.get('problems', []))} problems, "
                 f"{config.get('seeds', '?')} seeds", fontsize=9)
    ax.set_xlabel("attempts k")
    ax.set_ylabel("P(solved within k attempts)")
    ax.set_xticks(ks)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
