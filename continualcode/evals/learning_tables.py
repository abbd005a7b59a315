"""The learning bench's tables: per scenario, overall, as rich tables or markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads only when a bench runs, not when the CLI parser is built
    pass


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def render_tables(report: dict, console=None) -> None:
    """One rich table per scenario, then the overall table and the two headline ratios."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for scenario_id, results in report["scenarios"].items():
        base_general = results.get("base", {}).get("general")
        table = Table(title=f"{scenario_id}", title_justify="left")
        for column in ("method", "eval pass", "general pass", "Δ general", "train s", "final loss"):
            table.add_column(column, justify="left" if column == "method" else "right")
        for method, r in results.items():
            change = r["general"] - base_general if None not in (r["general"], base_general) else None
            train = r["train"] or {}
            table.add_row(method, _fmt(r["eval"]), _fmt(r["general"]), _fmt(change, True),
                          f"{train['seconds']:.0f}" if train else "—", _fmt(train.get("last_loss")))
        console.print(table)
    overall = report["overall"]
    table = Table(title=f"overall: {report['model']}, {len(report['scenarios'])} scenarios, "
                        f"{report['settings']['samples']} samples per item", title_justify="left")
    for column in ("method", "eval pass", "general pass", "Δ general", "train s"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method, r in overall["methods"].items():
        table.add_row(method, _fmt(r["eval"]), _fmt(r["general"]), _fmt(r["general_change"], True),
                      f"{r['train_seconds']:.0f}")
    console.print(table)
    if "sdpo_over_icl" in overall:
        console.print(f"sdpo ÷ icl (eval pass): {_fmt(overall['sdpo_over_icl'])}   "
                      f"(sdpo − base) ÷ (icl − base): {_fmt(overall.get('sdpo_gain_over_icl_gain'))}")


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
    ratios = report["overall"]
    if "sdpo_over_icl" in ratios:
        lines.append("")
        lines.append(f"sdpo ÷ icl (eval): {_fmt(ratios['sdpo_over_icl'])}; "
                     f"(sdpo − base) ÷ (icl − base): {_fmt(ratios.get('sdpo_gain_over_icl_gain'))}")
    return "\n".join(lines)
