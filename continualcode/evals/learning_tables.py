"""The learning bench's tables: per scenario, overall, as rich tables or markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads only when a bench runs, not when the CLI parser is built
    pass


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _interval(pair, signed: bool = False) -> str:
    """A bootstrap interval as [low, high] (— when the report has none)."""
    return "—" if not pair else f"[{_fmt(pair[0], signed)}, {_fmt(pair[1], signed)}]"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _ratio_lines(overall: dict) -> list[str]:
    """sdpo against each in-context reference the report has."""
    lines = []
    for name in ("icl", "icl-instruction", "icl-prefix"):
        suffix = name.replace("-", "_")
        if f"sdpo_over_{suffix}" in overall:
            lines.append(f"sdpo ÷ {name} (eval): {_fmt(overall[f'sdpo_over_{suffix}'])}; "
                         f"(sdpo − base) ÷ ({name} − base): {_fmt(overall.get(f'sdpo_gain_over_{suffix}_gain'))}")
    return lines


def render_tables(report: dict, console=None) -> None:
    """One rich table per scenario, then the overall table and the two headline ratios."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for scenario_id, results in report["scenarios"].items():
        base_general = results.get("base", {}).get("general")
        table = Table(title=f"{scenario_id}", title_justify="left")
        for column in ("method", "eval pass", "general pass", "Δ general", "train s", "s / feedback", "final loss"):
            table.add_column(column, justify="left" if column == "method" else "right")
        for method, r in results.items():
            change = r["general"] - base_general if None not in (r["general"], base_general) else None
            train = r["train"] or {}
            table.add_row(method, _fmt(r["eval"]), _fmt(r["general"]), _fmt(change, True),
                          f"{train['seconds']:.0f}" if train else "—", _seconds(train.get("seconds_per_event")),
                          _fmt(train.get("last_loss")))
        console.print(table)
    overall = report["overall"]
    table = Table(title=f"overall: {report['model']}, {len(report['scenarios'])} scenarios, "
                        f"{report['settings']['samples']} samples per item (95 % bootstrap CIs over items)",
                  title_justify="left")
    for column in ("method", "eval pass", "eval CI", "general pass", "general CI", "Δ general", "looped",
                   "s / feedback", "train s"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method, r in overall["methods"].items():
        table.add_row(method, _fmt(r["eval"]), _interval(r.get("eval_ci")), _fmt(r["general"]),
                      _interval(r.get("general_ci")), _fmt(r["general_change"], True), _fmt(r.get("looped")),
                      _seconds(r.get("seconds_per_event")), f"{r['train_seconds']:.0f}")
    console.print(table)
    for line in _ratio_lines(overall):
        console.print(line.replace("(eval): ", "(eval pass): ").replace("; ", "   "))


def render_markdown(report: dict) -> str:
    """The same numbers as markdown: one row per scenario (eval / general per method), then overall."""
    methods = list(report["overall"]["methods"])
    head = "| scenario | " + " | ".join(f"{m} eval / gen" for m in methods) + " |"
    lines = [head, "|---" * (len(methods) + 1) + "|"]
    for scenario_id, results in report["scenarios"].items():
        cells = [f"{_fmt(results[m]['eval'])} / {_fmt(results[m]['general'])}" if m in results else "—"
                 for m in methods]
        lines.append(f"| {scenario_id} | " + " | ".join(cells) + " |")
    overall = report["overall"]["methods"]
    lines.append("| **overall** | " + " | ".join(
        f"**{_fmt(overall[m]['eval'])} / {_fmt(overall[m]['general'])}**" for m in methods) + " |")
    lines.append("| Δ general vs base | " + " | ".join(_fmt(overall[m]["general_change"], True) for m in methods) + " |")
    if any(overall[m].get("eval_ci") for m in methods):
        lines.append("| 95 % CI eval | " + " | ".join(_interval(overall[m].get("eval_ci")) for m in methods) + " |")
        lines.append("| 95 % CI general | " + " | ".join(_interval(overall[m].get("general_ci")) for m in methods) + " |")
        lines.append("| 95 % CI eval − base | " + " | ".join(
            _interval(overall[m].get("eval_change_ci"), True) for m in methods) + " |")
    if any(overall[m].get("looped") is not None for m in methods):
        lines.append("| answers that loop | " + " | ".join(_fmt(overall[m].get("looped")) for m in methods) + " |")
    if any(overall[m].get("seconds_per_event") for m in methods):
        lines.append("| seconds per feedback | " + " | ".join(
            _seconds(overall[m].get("seconds_per_event")) for m in methods) + " |")
    ratios = _ratio_lines(report["overall"])
    return "\n".join(lines + ([""] + ratios if ratios else []))
