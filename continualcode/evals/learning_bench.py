"""`continualcode bench learn`: does a correction stick on prompts the model never trained on?

For each scenario (one JSON object per line, see docs/learning.md) and each
method (``continualcode.evals.learning_methods``), starting from the base weights:
learn from the train items' feedback, then sample ``--samples`` answers per
held-out eval item and per general item (what must not be forgotten) and count
how many pass their regex checks. Prints one table per scenario and an overall
table with sdpo ÷ icl and the general-score change against base; ``--json``
prints the same numbers.

Every method sees the same sampling seeds for the same prompt, so a difference
between two methods comes from their weights or context, not from luck.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from continualcode.config import UsageError
from continualcode.evals.learning_tables import _fmt
from continualcode.learning.checks import Check
from continualcode.learning.gate import degenerate
from continualcode.learning.types import TEMPLATE_FOR_KIND

if TYPE_CHECKING:  # torch loads only when a bench runs, not when the CLI parser is built
    from continualcode.evals.learning_methods import TrainSettings
    from continualcode.learning.learner import Learner

DEFAULT_SCENARIOS = Path(__file__).resolve().parent / "sets" / "learn_public.jsonl"
"""The public scenario set (bench/scenarios/public.jsonl in a checkout; shipped inside the package)."""
METHODS = ("base", "icl", "icl-instruction", "icl-prefix", "sdpo", "sft")
DEFAULT_METHODS = ("base", "icl", "icl-instruction", "sdpo", "sft")
"""What a run without --method measures (icl-prefix is asked for by name)."""
ICL = {"icl": None, "icl-instruction": "instruction", "icl-prefix": "prefix"}
"""The in-context references and their teacher template (None: the feedback kind's, as SDPO's teacher)."""


@dataclass
class Scenario:
    """One feedback rule: train items (prompt + feedback) and held-out checks."""

    id: str
    train: list[dict]          # {"messages", "feedback", "kind"}
    eval: list[Check]
    general: list[Check]
    category: str = ""

    @property
    def feedback(self) -> list[tuple[str, str]]:
        return [(item["kind"], item["feedback"]) for item in self.train]


def _check(raw: dict, where: str) -> Check:
    if not isinstance(raw.get("messages"), list) or not raw["messages"]:
        raise UsageError(f"{where}: needs a non-empty 'messages' list")
    pass_regex, fail_regex = raw.get("pass_regex", []), raw.get("fail_regex", [])
    pass_regex = [pass_regex] if isinstance(pass_regex, str) else list(pass_regex)
    fail_regex = [fail_regex] if isinstance(fail_regex, str) else list(fail_regex)
    if not pass_regex and not fail_regex:
        raise UsageError(f"{where}: needs a pass_regex or a fail_regex (a check that can fail)")
    for pattern in pass_regex + fail_regex:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"{where}: bad regex {pattern!r}: {exc}") from exc
    return Check(raw["messages"], pass_regex, fail_regex)


def parse_scenario(raw: dict, where: str) -> Scenario:
    """Validate one scenario object; errors name the line and field to fix."""
    if not isinstance(raw, dict) or not raw.get("id"):
        raise UsageError(f"{where}: a scenario is a JSON object with an 'id'")
    train = []
    for i, item in enumerate(raw.get("train") or []):
        spot = f"{where} ({raw['id']}) train[{i}]"
        if not isinstance(item.get("messages"), list) or not str(item.get("feedback") or "").strip():
            raise UsageError(f"{spot}: needs 'messages' and a non-empty 'feedback'")
        if item["messages"][-1].get("role") != "user":
            raise UsageError(f"{spot}: messages must end with the user turn the model answers")
        kind = item.get("kind", "followup")
        if kind not in TEMPLATE_FOR_KIND:
            raise UsageError(f"{spot}: kind {kind!r} is not one of {sorted(TEMPLATE_FOR_KIND)}")
        train.append({"messages": item["messages"], "feedback": item["feedback"], "kind": kind})
    if not train:
        raise UsageError(f"{where} ({raw['id']}): needs at least one train item")
    evals = [_check(c, f"{where} ({raw['id']}) eval[{i}]") for i, c in enumerate(raw.get("eval") or [])]
    if not evals:
        raise UsageError(f"{where} ({raw['id']}): needs at least one eval item")
    general = [_check(c, f"{where} ({raw['id']}) general[{i}]") for i, c in enumerate(raw.get("general") or [])]
    return Scenario(str(raw["id"]), train, evals, general, str(raw.get("category", "")))


def load_scenarios(path: Path | str, only: list[str] | None = None) -> list[Scenario]:
    """Read a scenario JSONL file (blank lines and lines starting with # are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--scenarios {path}: no such file (the public set is {DEFAULT_SCENARIOS})")
    scenarios = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON ({exc})") from exc
        scenarios.append(parse_scenario(raw, f"{path}:{number}"))
    if only:
        unknown = sorted(set(only) - {s.id for s in scenarios})
        if unknown:
            raise UsageError(f"--only {', '.join(unknown)}: no such scenario in {path}")
        scenarios = [s for s in scenarios if s.id in only]
    return scenarios


SYSTEMS = ("none", "agent")
"""``--system``: the scenarios as written, or under the REPL's system prompt (the agent's tools and call
format, for a repository with no files): the conditions a correction given in the REPL trains and is
judged under."""


def agent_system_prompt(template: str | None = None) -> str:
    """The REPL's system prompt for an empty repository named ``project`` (``template``: another
    prompts/system.md to try)."""
    from continualcode.agent.system_prompt import system_prompt
    from continualcode.tools import ToolConfig, default_tools

    return system_prompt(default_tools(ToolConfig()), "Repository project: (no files yet)", template)


def with_system(scenarios: list[Scenario], text: str) -> list[Scenario]:
    """Every conversation of ``scenarios`` (train, eval, general) under the system message ``text``;
    a conversation that already starts with a system message keeps its own."""
    def under(messages: list[dict]) -> list[dict]:
        own = messages and messages[0].get("role") == "system"
        return messages if own else [{"role": "system", "content": text}, *messages]

    return [dataclasses.replace(
        s, train=[{**item, "messages": under(item["messages"])} for item in s.train],
        eval=[dataclasses.replace(c, messages=under(c.messages)) for c in s.eval],
        general=[dataclasses.replace(c, messages=under(c.messages)) for c in s.general]) for s in scenarios]


# ----------------------------------------------------------------------------- running


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def pass_rates(learner: Learner, checks: list[Check], *, n: int, max_new_tokens: int, temperature: float,
               seed: int, context: list[tuple[str, str]] | None = None,
               template: str | None = None) -> tuple[list[float], list[str], float]:
    """Sample ``n`` answers per check (all in one batch); each check's pass rate, its first answer, and
    the share of all answers that loop (``gate.degenerate``: a regex can pass an answer that repeats
    its list to the token limit).

    With ``context`` (the ICL methods) every prompt is shown that feedback, with ``template``.
    """
    from continualcode.evals.learning_methods import icl_messages

    if not checks:
        return [], [], 0.0
    conversations = [icl_messages(c.messages, context, template) if context else c.messages for c in checks]
    samples = learner.sample(conversations, n=n, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    rates = [sum(c.passes(s.text) for s in group) / len(group) for c, group in zip(checks, samples)]
    answers = [s.text for group in samples for s in group]
    return rates, [group[0].text for group in samples], sum(map(degenerate, answers)) / len(answers)


UNTRAINED = ("base", *ICL)
"""Methods whose numbers do not depend on the training settings, so a tuning run may reuse them."""


def _earlier_report(path: Path, model: str, wanted: dict, unreadable: str, mismatch: str, fix: str) -> dict:
    """An earlier ``--out`` report, refused (UsageError) unless its model and ``wanted`` settings match."""
    try:
        earlier = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{unreadable} ({exc})") from exc
    got = {key: earlier.get("settings", {}).get(key) for key in wanted}
    if earlier.get("model") != model or got != wanted:
        raise UsageError(f"{mismatch} ({earlier.get('model')}, {got}); this run uses ({model}, {wanted}): {fix}")
    return earlier


def _same_items(result: dict, scenario: Scenario) -> bool:
    """Was this result measured on as many eval and general items as the scenario has now?"""
    return len(result["eval_items"]) == len(scenario.eval) and len(result["general_items"]) == len(scenario.general)


def reusable_results(path: Path, model: str, scenarios: list[Scenario], *, samples: int, seed: int,
                     settings: TrainSettings) -> dict[str, dict]:
    """base/icl results from an earlier report (``--baseline``), if it sampled exactly as this run will.

    Only the sampling matters for these two methods (model, samples, seed,
    temperature, answer length, system prompt, and the scenario's items), not lr or steps.
    """
    wanted = {"samples": samples, "seed": seed, "temperature": settings.temperature,
              "max_new_tokens": settings.max_new_tokens}
    if settings.system != "none":  # reports from before --system have no such key: they ran without one
        wanted["system"] = settings.system
    earlier = _earlier_report(path, model, wanted, f"--baseline {path}: cannot read an earlier --out report",
                              f"--baseline {path} was sampled differently", "rerun base and icl instead")
    reused = {}
    for scenario in scenarios:
        old = earlier.get("scenarios", {}).get(scenario.id, {})
        kept = {m: r for m, r in old.items() if m in UNTRAINED and _same_items(r, scenario)}
        if kept:
            reused[scenario.id] = kept
    return reused


def run_scenario(learner: Learner, scenario: Scenario, methods: list[str], settings: TrainSettings, *,
                 samples: int, seed: int, cache: dict | None = None, log=None, reused: dict | None = None) -> dict:
    """All methods on one scenario, each from the base weights; returns {method: result}."""
    from continualcode.evals.learning_methods import train_on_feedback

    results = {}
    checks = scenario.eval + scenario.general
    for method in methods:
        if reused and method in reused:
            results[method] = {**reused[method], "reused": True}
            if log:
                log(f"  {scenario.id:20} {method:15} eval {_fmt(reused[method]['eval'])} (from --baseline)")
            continue
        started = time.perf_counter()
        learner.reset(settings.sdpo_config())
        train = None
        if method in ("sdpo", "sft"):
            train = train_on_feedback(learner, scenario.train, method, settings, seed,
                                      held_out=[c.messages for c in checks])
        key = None
        if method == "base" and cache is not None:
            key = json.dumps([[c.messages for c in checks], samples, seed, settings.max_new_tokens,
                              settings.temperature])
        if key is not None and key in cache:
            rates, shown, looped = cache[key]
        else:
            rates, shown, looped = pass_rates(learner, checks, n=samples, max_new_tokens=settings.max_new_tokens,
                                              temperature=settings.temperature, seed=seed,
                                              context=scenario.feedback if method in ICL else None,
                                              template=ICL.get(method))
            if key is not None:
                cache[key] = (rates, shown, looped)
        n_eval = len(scenario.eval)
        results[method] = {
            "eval": _mean(rates[:n_eval]), "general": _mean(rates[n_eval:]),
            "eval_items": rates[:n_eval], "general_items": rates[n_eval:],
            "first_samples": shown, "looped": looped, "train": train, "seconds": time.perf_counter() - started,
        }
        if log:
            log(f"  {scenario.id:20} {method:15} eval {results[method]['eval']:.2f} "
                f"general {_fmt(results[method]['general'])} ({results[method]['seconds']:.0f} s)")
    learner.reset(settings.sdpo_config())
    return results


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bootstrap(per_scenario: dict[str, dict], methods: list[str], *, replicates: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict[str, dict]:
    """Bootstrap confidence intervals of the overall means: items resampled within each scenario.

    Each replicate draws every scenario's eval (and general) items with
    replacement, the same draw for every method (paired), and averages over
    scenarios as ``summarize`` does. Returns, per method with per-item
    results: ``eval_ci``, ``general_ci`` and, against base, ``eval_change_ci``
    and ``general_change_ci`` ((low, high) at ``level``). Fixed seed: the same
    report gives the same intervals.
    """
    rng = random.Random(seed)
    draws = {m: {"eval": [], "general": []} for m in methods}
    for _ in range(replicates):
        means = {m: {"eval": [], "general": []} for m in methods}
        for results in per_scenario.values():
            for part in ("eval", "general"):
                items = {m: r.get(f"{part}_items") for m, r in results.items() if m in methods}
                sizes = {len(v) for v in items.values() if v}
                if len(sizes) != 1:
                    continue
                n = sizes.pop()
                picked = [rng.randrange(n) for _ in range(n)]
                for m, values in items.items():
                    if values:
                        means[m][part].append(sum(values[i] for i in picked) / n)
        for m in methods:
            for part in ("eval", "general"):
                if means[m][part]:
                    draws[m][part].append(sum(means[m][part]) / len(means[m][part]))
    low, high = (1 - level) / 2, 1 - (1 - level) / 2
    out: dict[str, dict] = {}
    for m in methods:
        out[m] = {}
        for part in ("eval", "general"):
            values = draws[m][part]
            if len(values) == replicates:
                out[m][f"{part}_ci"] = (_percentile(values, low), _percentile(values, high))
                base = draws.get("base", {}).get(part, [])
                if m != "base" and len(base) == replicates:
                    change = [v - b for v, b in zip(values, base)]
                    out[m][f"{part}_change_ci"] = (_percentile(change, low), _percentile(change, high))
    return out


def summarize(per_scenario: dict[str, dict], *, seed: int = 0) -> dict:
    """Overall means per method (with bootstrap CIs), seconds per feedback event, the general change
    against base, and sdpo against each in-context reference."""
    # Other names (a tuning variant's column, bench/learn_table.py --label) come after the methods.
    methods = sorted({m for r in per_scenario.values() for m in r},
                     key=lambda m: (METHODS.index(m) if m in METHODS else len(METHODS), m))
    intervals = bootstrap(per_scenario, methods, seed=seed)
    overall: dict = {"methods": {}}
    for method in methods:
        evals = [r[method]["eval"] for r in per_scenario.values() if method in r]
        generals = [r[method]["general"] for r in per_scenario.values() if method in r and r[method]["general"] is not None]
        trains = [r[method]["train"] for r in per_scenario.values() if method in r and r[method].get("train")]
        events = sum(t.get("events", 0) for t in trains)
        looped = [r[method]["looped"] for r in per_scenario.values() if r.get(method, {}).get("looped") is not None]
        overall["methods"][method] = {
            "eval": _mean(evals), "general": _mean(generals), "looped": _mean(looped) if looped else None,
            "train_seconds": sum(t.get("seconds", 0.0) for t in trains),
            "seconds_per_event": sum(t.get("seconds", 0.0) for t in trains if t.get("events")) / events if events else None,
            **intervals.get(method, {}),
        }
    base = overall["methods"].get("base")
    for values in overall["methods"].values():
        values["general_change"] = (values["general"] - base["general"]
                                    if base and values["general"] is not None and base["general"] is not None else None)
    sdpo = overall["methods"].get("sdpo")
    for name, reference in ((name, overall["methods"].get(name)) for name in ICL):
        if not (sdpo and reference):
            continue
        suffix = name.replace("-", "_")
        overall[f"sdpo_over_{suffix}"] = sdpo["eval"] / reference["eval"] if reference["eval"] else None
        if base and reference["eval"] != base["eval"]:
            overall[f"sdpo_gain_over_{suffix}_gain"] = (sdpo["eval"] - base["eval"]) / (reference["eval"] - base["eval"])
    return overall


def run_bench(learner: Learner, scenarios: list[Scenario], methods: list[str], settings: TrainSettings, *,
              samples: int = 4, seed: int = 0, log=None, reused: dict[str, dict] | None = None,
              done: dict[str, dict] | None = None, checkpoint=None) -> dict:
    """The whole bench: every scenario × method; the JSON document `--json` prints.

    ``done`` holds finished scenarios of an interrupted run (``--resume``): they
    are kept as they are. ``checkpoint(report)`` is called after every scenario
    with the report so far, so a long run killed midway loses one scenario.
    """
    started = time.perf_counter()
    cache: dict = {}
    per_scenario = {}

    def report() -> dict:
        return {
            "model": learner.model_name,
            "settings": {**settings.__dict__, "samples": samples, "seed": seed, "methods": methods},
            "scenarios": per_scenario,
            "overall": summarize(per_scenario),
            "seconds": time.perf_counter() - started,
        }

    for number, scenario in enumerate(scenarios, 1):
        if log:
            log(f"[{number}/{len(scenarios)}] {scenario.id}")
        if done and scenario.id in done:
            per_scenario[scenario.id] = done[scenario.id]
            if log:
                log(f"  {scenario.id:20} kept from the interrupted run (--resume)")
            continue
        per_scenario[scenario.id] = run_scenario(learner, scenario, methods, settings, samples=samples,
                                                 seed=seed, cache=cache, log=log,
                                                 reused=(reused or {}).get(scenario.id))
        if checkpoint:
            checkpoint(report())
    return report()


def resumable_results(path: Path, model: str, scenarios: list[Scenario], methods: list[str], *, samples: int,
                      seed: int, settings: TrainSettings) -> dict[str, dict]:
    """Finished scenarios of an interrupted run whose ``--out`` is ``path`` (``--resume``).

    Every setting must match (training ones too, unlike ``--baseline``); a
    scenario counts as finished when it has every requested method and the
    same number of items. A missing file means nothing is finished yet.
    """
    if not Path(path).exists():
        return {}
    earlier = _earlier_report(path, model, {**settings.__dict__, "samples": samples, "seed": seed},
                              f"--resume: cannot read {path} (move it away to start over)",
                              f"--resume: {path} was run with other settings",
                              "pick another --out or match them")
    finished = {}
    for scenario in scenarios:
        old = earlier.get("scenarios", {}).get(scenario.id, {})
        if all(m in old and _same_items(old[m], scenario) for m in methods):
            finished[scenario.id] = {m: old[m] for m in methods}
    return finished


# ----------------------------------------------------------------------------- output


# ----------------------------------------------------------------------------- command line
