"""`continualcode report`: is the agent learning? Curves from the store, in the terminal and as a PNG.

Four views, all read from the repository's store (nothing is recomputed):

- loss per training batch (first and last SDPO step of the batch),
- mean token advantage per batch (log p_teacher(y) − log p_student(y): how
  much the self-teacher, shown the feedback, disagreed with the answer),
- the promotion gate's replay pass rate per adapter version (candidate and
  live), with rejected versions marked,
- feedback events by kind.

The terminal view uses sparklines and bars (rich); ``--out FILE.png`` writes
the same curves with matplotlib (written atomically).
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from continualcode.config import Settings, UsageError
from continualcode.store.db import Store

SPARKS = "▁▂▃▄▅▆▇█"


@dataclass
class LearningHistory:
    """Everything the report draws, oldest first."""

    steps: list[dict] = field(default_factory=list)      # version, loss, first_loss, advantage, seconds, created
    versions: list[dict] = field(default_factory=list)   # version, decision, reason, pass_live, pass_candidate, ...
    feedback: dict[str, int] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"steps": self.steps, "versions": self.versions, "feedback": self.feedback, "examples": self.examples}


def load_history(store: Store, last: int = 500) -> LearningHistory:
    """The last ``last`` training batches, every gate decision, and feedback and example counts."""
    steps = []
    for row in reversed(store.recent_train_steps(last)):
        metrics = row["metrics"] or {}
        steps.append({"version": row["adapter_version"], "loss": metrics.get("loss"),
                      "first_loss": metrics.get("first_loss"), "advantage": metrics.get("advantage"),
                      "divergence": metrics.get("divergence"), "steps": metrics.get("steps"),
                      "seconds": metrics.get("seconds"), "created": row["created"]})
    versions: dict[str, dict] = {}
    for event in store.adapter_events():
        if event["event"] not in ("promoted", "rejected"):
            continue
        detail = event["detail"] or {}
        scores = detail.get("scores") or {}
        versions[event["version"]] = {
            "version": event["version"], "decision": event["event"], "reason": detail.get("reason", ""),
            "pass_live": scores.get("pass_live"), "pass_candidate": scores.get("pass_candidate"),
            "accepted_logprob_candidate": scores.get("accepted_logprob_candidate"),
            "gate_seconds": scores.get("seconds"), "created": event["created"],
        }
    return LearningHistory(steps, list(versions.values()), store.feedback_counts(), store.example_counts())


# ----------------------------------------------------------------------------- terminal


def sparkline(values: list[float | None], width: int = 60) -> str:
    """Unicode sparkline of the last ``width`` values (None drawn as a space)."""
    values = values[-width:]
    real = [v for v in values if v is not None]
    if not real:
        return ""
    low, high = min(real), max(real)
    span = high - low or 1.0
    return "".join(" " if v is None else SPARKS[min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))]
                   for v in values)


def _range(values: list[float | None]) -> str:
    real = [v for v in values if v is not None]
    return f"{real[0]:.3f} → {real[-1]:.3f} (min {min(real):.3f}, max {max(real):.3f})" if real else "no data"


def render_terminal(history: LearningHistory, console=None) -> None:
    """The compact view: sparklines for loss and advantage, a gate table, feedback bars."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    losses = [s["loss"] for s in history.steps]
    advantages = [s["advantage"] for s in history.steps]
    examples = ", ".join(f"{k} {v}" for k, v in sorted(history.examples.items())) or "none"
    console.print(f"[bold]training batches[/bold]: {len(history.steps)}   examples: {examples}")
    if history.steps:
        console.print(f"loss       {sparkline(losses)}  {_range(losses)}")
        console.print(f"advantage  {sparkline(advantages)}  {_range(advantages)}")
    if history.versions:
        table = Table(title="promotion gate per version", title_justify="left")
        for column in ("version", "decision", "pass live → cand", "gate s", "reason"):
            table.add_column(column)
        for v in history.versions[-15:]:
            passes = (f"{v['pass_live']:.2f} → {v['pass_candidate']:.2f}"
                      if v["pass_live"] is not None and v["pass_candidate"] is not None else "—")
            style = "red" if v["decision"] == "rejected" else ""
            table.add_row(v["version"], f"[{style}]{v['decision']}[/{style}]" if style else v["decision"], passes,
                          f"{v['gate_seconds']:.1f}" if v["gate_seconds"] is not None else "—", v["reason"])
        console.print(table)
        scores = [v["pass_candidate"] for v in history.versions]
        console.print(f"gate score {sparkline(scores)}  {_range(scores)}")
    if history.feedback:
        top = max(history.feedback.values())
        console.print("[bold]feedback by kind[/bold]")
        for kind, count in sorted(history.feedback.items(), key=lambda kv: -kv[1]):
            console.print(f"  {kind:12} {'█' * max(1, round(count / top * 30))} {count}")
    if not (history.steps or history.versions or history.feedback):
        console.print("nothing learned yet: give feedback in a session (or run `continualcode train`)")


# ----------------------------------------------------------------------------- PNG


def render_png(history: LearningHistory, path: Path) -> None:
    """Four panels (loss, advantage, gate score per version, feedback by kind) written atomically to ``path``."""
    try:
        import matplotlib
    except ImportError as exc:
        raise UsageError("--out needs matplotlib: pip install matplotlib (the terminal report works without it)") from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from continualcode.atomic import atomic_write

    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    batches = list(range(1, len(history.steps) + 1))
    loss, advantage, gate, feedback = axes[0][0], axes[0][1], axes[1][0], axes[1][1]
    loss.plot(batches, [s["loss"] for s in history.steps], marker=".", label="last step")
    loss.plot(batches, [s["first_loss"] for s in history.steps], marker=".", alpha=0.5, label="first step")
    loss.set(title="SDPO loss per batch", xlabel="batch", ylabel="loss")
    loss.legend()
    advantage.plot(batches, [s["advantage"] for s in history.steps], marker=".", color="tab:green")
    advantage.axhline(0.0, color="grey", linewidth=0.8)
    advantage.set(title="mean token advantage (teacher − student)", xlabel="batch", ylabel="nats/token")
    names = [v["version"] for v in history.versions]
    gate.plot(names, [v["pass_live"] for v in history.versions], marker="o", alpha=0.6, label="live")
    gate.plot(names, [v["pass_candidate"] for v in history.versions], marker="o", label="candidate")
    rejected = [(v["version"], v["pass_candidate"]) for v in history.versions if v["decision"] == "rejected"]
    if rejected:
        gate.scatter(*zip(*rejected), color="red", zorder=3, s=60, label="rejected")
    gate.set(title="gate replay pass rate per version", ylabel="pass rate", ylim=(-0.05, 1.05))
    gate.tick_params(axis="x", rotation=45)
    gate.legend()
    kinds = sorted(history.feedback, key=lambda k: -history.feedback[k])
    feedback.bar(kinds, [history.feedback[k] for k in kinds], color="tab:orange")
    feedback.set(title="feedback events by kind", ylabel="events")
    feedback.tick_params(axis="x", rotation=45)
    from matplotlib.ticker import MaxNLocator

    for axis in (loss, advantage):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write(Path(path), buffer.getvalue())


# ----------------------------------------------------------------------------- command line


def register_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, metavar="FILE.png", help="also write the curves as a PNG")
    parser.add_argument("--last", type=int, default=500, metavar="N", help="training batches to show (default 500)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from continualcode.paths import find_repo_root

    repo = (args.repo or find_repo_root(Path.cwd())).resolve()
    store_path = repo / ".continualcode" / "store.db"
    if not store_path.is_file():
        raise UsageError(f"no store at {store_path}: run continualcode in {repo} first (or pass --repo)")
    with Store(store_path) as store:
        history = load_history(store, args.last)
    if args.out:
        render_png(history, args.out)
    if args.json:
        print(json.dumps({**history.to_json(), "png": str(args.out) if args.out else None}, indent=2))
    else:
        render_terminal(history)
        if args.out:
            print(f"wrote {args.out}")
    return 0
