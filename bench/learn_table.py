"""One markdown table from several `continualcode bench learn --out` reports of one model.

    python bench/learn_table.py REPORT.json [REPORT.json ...] [--label sdpo=alpha1:FILE.json]

Rows are scenarios; each report brings its methods, a later report's method
replacing an earlier one's (so a tuning run's `sdpo` can sit beside the base,
icl and sft of the first run). `--label NAME=FILE` adds FILE's sdpo as an extra
column named NAME (other settings, side by side, e.g. one recipe lever per
report). Reports must share model, samples, seed, temperature and answer
length and system prompt. Under the overall row: 95 % bootstrap intervals (items resampled within
scenarios, fixed seed) of eval, general and eval − base where the reports hold
per-item results, and seconds per feedback event where they were recorded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from continualcode.evals.learning_bench import summarize
from continualcode.evals.learning_tables import render_markdown

SAMPLING = ("samples", "seed", "temperature", "max_new_tokens", "system")


def sampled(report: dict, key: str):
    """A sampling setting of a report (reports from before --system ran without one)."""
    return report["settings"].get(key, "none" if key == "system" else None)


def combine(reports: list[dict], extra: dict[str, dict] | None = None) -> dict:
    first = reports[0]
    for report in [*reports[1:], *(extra or {}).values()]:
        if report["model"] != first["model"] or any(sampled(report, k) != sampled(first, k) for k in SAMPLING):
            raise SystemExit(f"reports were sampled differently: {first['model']} {first['settings']} vs "
                             f"{report['model']} {report['settings']}")
    scenarios: dict[str, dict] = {}
    for report in reports:
        for scenario_id, results in report["scenarios"].items():
            scenarios.setdefault(scenario_id, {}).update(results)
    for name, report in (extra or {}).items():
        for scenario_id, results in report["scenarios"].items():
            if "sdpo" in results:
                scenarios.setdefault(scenario_id, {})[name] = results["sdpo"]
    return {"model": first["model"], "scenarios": scenarios, "overall": summarize(scenarios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--label", action="append", default=[], metavar="NAME=FILE",
                        help="add FILE's sdpo results as a column named NAME")
    args = parser.parse_args()
    extra = {}
    for item in args.label:
        name, _, path = item.partition("=")
        extra[name] = json.loads(Path(path).read_text())
    print(render_markdown(combine([json.loads(p.read_text()) for p in args.reports], extra)))


if __name__ == "__main__":
    main()
