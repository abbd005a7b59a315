"""The learning bench: scenario files, real regex checks, the public set's collapse-proofing,
and a real run on SmolLM2 through the CLI (tables and JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from continualcode.cli import main
from continualcode.config import UsageError
from continualcode.evals.learning_bench import (
    DEFAULT_SCENARIOS,
    load_scenarios,
    summarize,
)
from continualcode.learning.checks import Check

USER = [{"role": "user", "content": "hi"}]


def write(path: Path, *scenarios: dict) -> Path:
    path.write_text("\n".join(json.dumps(s) for s in scenarios) + "\n")
    return path


def scenario(id_: str = "s", **overrides) -> dict:
    base = {"id": id_, "train": [{"messages": USER, "feedback": "Be brief."}],
            "eval": [{"messages": USER, "pass_regex": "hello"}], "general": []}
    return {**base, **overrides}


def test_check_needs_all_pass_patterns_and_no_fail_pattern():
    check = Check(USER, [r"\b42\b", r"(?i)answer"], [r"(?i)\bsure\b"])
    assert check.passes("The answer is 42.")
    assert not check.passes("42")                      # second pass pattern missing
    assert not check.passes("Sure! The answer is 42.")  # fail pattern present
    assert not Check(USER, [], [r"x"]).passes("   \n")  # empty output never passes


@pytest.mark.parametrize("bad, message", [
    ({"eval": [{"messages": USER}]}, "needs a pass_regex or a fail_regex"),
    ({"eval": [{"messages": USER, "pass_regex": "("}]}, "bad regex"),
    ({"train": [{"messages": USER, "feedback": "x", "kind": "praise"}]}, "kind 'praise'"),
    ({"train": []}, "at least one train item"),
    ({"eval": []}, "at least one eval item"),
    ({"train": [{"messages": [{"role": "assistant", "content": "x"}], "feedback": "x"}]}, "end with the user turn"),
])
def test_bad_scenarios_are_refused_with_the_line_and_what_to_fix(tmp_path, bad, message):
    path = write(tmp_path / "s.jsonl", scenario(**bad))
    with pytest.raises(UsageError, match=message) as info:
        load_scenarios(path)
    assert "s.jsonl:1" in str(info.value)


def test_only_selects_scenarios_and_unknown_ids_are_named(tmp_path):
    path = write(tmp_path / "s.jsonl", scenario("a"), scenario("b"))
    assert [s.id for s in load_scenarios(path, ["b"])] == ["b"]
    with pytest.raises(UsageError, match="nope"):
        load_scenarios(path, ["nope"])


def test_public_set_covers_the_four_kinds_of_feedback():
    scenarios = load_scenarios(DEFAULT_SCENARIOS)
    assert len(scenarios) >= 12
    assert {s.category for s in scenarios} == {"format", "style", "convention", "tool-use"}
    for s in scenarios:
        assert len(s.train) >= 2 and len(s.eval) >= 3 and s.general, s.id
        assert all(c.pass_regex for c in s.eval), f"{s.id}: every eval item must check correctness"


COLLAPSED = ["", "NO", "YES", "15", "Paris", "- red\n- blue", '{"answer": "Tokyo"}',
             '```python\ndef f(x: int) -> int:\n    """Do it."""\n    return x\n```',
             '<tool name="read_file">\n<arg name="path">app.py</arg>\n</tool>',
             '<tool name="run_tests">\n</tool>', '<tool name="grep">\n<arg name="pattern">x</arg>\n</tool>']


@pytest.mark.parametrize("answer", COLLAPSED)
def test_a_constant_answer_fails_every_public_scenario(answer):
    """SDPO.md: a 135M model learned a format by answering NO to everything. Such a policy must not score."""
    for s in load_scenarios(DEFAULT_SCENARIOS):
        rate = sum(c.passes(answer) for c in s.eval) / len(s.eval)
        assert rate < 1.0, f"{s.id}: the constant answer {answer!r} passes every eval item"


def test_summary_means_ratios_and_general_change_by_hand():
    def result(eval_, general):
        return {"eval": eval_, "general": general, "train": None}
    per = {"a": {"base": result(0.0, 1.0), "icl": result(0.5, 1.0), "sdpo": result(0.25, 0.5)},
           "b": {"base": result(0.5, 1.0), "icl": result(1.0, 0.5), "sdpo": result(0.75, 1.0)}}
    overall = summarize(per)
    assert overall["methods"]["sdpo"]["eval"] == pytest.approx(0.5)
    assert overall["methods"]["icl"]["eval"] == pytest.approx(0.75)
    assert overall["sdpo_over_icl"] == pytest.approx(0.5 / 0.75)
    assert overall["sdpo_gain_over_icl_gain"] == pytest.approx((0.5 - 0.25) / (0.75 - 0.25))
    assert overall["methods"]["sdpo"]["general_change"] == pytest.approx(-0.25)
    assert overall["methods"]["base"]["general_change"] == 0.0


def test_bootstrap_intervals_resample_items_within_scenarios_with_a_fixed_seed():
    from continualcode.evals.learning_bench import bootstrap

    def result(eval_items, general_items):
        return {"eval": sum(eval_items) / len(eval_items), "general": sum(general_items) / len(general_items),
                "eval_items": eval_items, "general_items": general_items, "train": None}
    per = {"a": {"base": result([0.0, 0.0, 0.0, 0.0], [1.0, 1.0]), "sdpo": result([1.0, 1.0, 0.0, 0.0], [1.0, 0.5])},
           "b": {"base": result([0.5, 0.5, 0.5, 0.5], [1.0, 0.0]), "sdpo": result([0.5, 0.5, 0.5, 0.5], [1.0, 0.0])}}
    ci = bootstrap(per, ["base", "sdpo"], replicates=2000, seed=0)
    assert ci == bootstrap(per, ["base", "sdpo"], replicates=2000, seed=0)  # fixed seed, same intervals
    assert ci["base"]["eval_ci"] == (0.25, 0.25)  # no spread within either scenario: no interval
    low, high = ci["sdpo"]["eval_ci"]
    assert 0.25 <= low < 0.5 < high <= 0.75  # scenario a's 0/1 items spread the mean 0.5 ± 0.25
    assert ci["sdpo"]["eval_change_ci"] == (low - 0.25, high - 0.25)  # paired with base's constant items
    assert ci["base"]["general_ci"][0] < 0.75 < ci["base"]["general_ci"][1]
    overall = summarize(per)
    assert overall["methods"]["sdpo"]["eval_ci"] == ci["sdpo"]["eval_ci"]
    assert bootstrap({"a": {"base": {"eval": 0.5, "general": None, "train": None}}}, ["base"]) == {"base": {}}


def test_every_lever_is_a_flag_recorded_in_the_settings(tmp_path):
    import argparse

    from continualcode.commands.bench import register_bench, train_settings

    parser = argparse.ArgumentParser()
    register_bench(parser)
    args = parser.parse_args(["learn", "--rollouts", "4", "--rounds", "2", "--expand", "3", "--teacher-samples",
                              "0.25", "--replay", "--support", "union", "--cache-teacher"])
    settings = train_settings(args, "smollm2-135m")
    assert (settings.rollouts, settings.rounds, settings.expand, settings.teacher_samples, settings.replay,
            settings.support, settings.cache_teacher) == (4, 2, 3, 0.25, True, "union", True)
    recipe = settings.recipe()
    assert (recipe.rollouts, recipe.rounds, recipe.steps, recipe.expand, recipe.split()) == (4, 2, 4, 3, (3, 1))
    assert settings.sdpo_config().support == "union"
    defaults = train_settings(parser.parse_args(["learn"]), "smollm2-135m")
    assert defaults.recipe().split() == (0, 0) and defaults.support == "student" and not defaults.replay
    with pytest.raises(UsageError, match="fraction"):
        train_settings(parser.parse_args(["learn", "--teacher-samples", "2"]), "smollm2-135m")
    gated = train_settings(parser.parse_args(["learn", "--gate", "--gate-threshold", "0.2"]), "smollm2-135m")
    assert (gated.gate, gated.gate_threshold) == (True, 0.2)
    assert (defaults.gate, defaults.gate_threshold) == (False, 0.15)
    for bad in (["--gate-threshold", "0.2"], ["--gate", "--gate-threshold", "1.5"]):
        with pytest.raises(UsageError, match="gate-threshold"):
            train_settings(parser.parse_args(["learn", *bad]), "smollm2-135m")


def test_resume_refuses_a_report_run_with_other_levers(tmp_path):
    from continualcode.evals.learning_bench import resumable_results
    from continualcode.evals.learning_methods import TrainSettings

    scenarios = load_scenarios(write(tmp_path / "s.jsonl", scenario("a")))
    settings = TrainSettings(steps_per_feedback=2, learning_rate=1e-4, rollouts=4)
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"model": "m", "settings": {**settings.__dict__, "samples": 4, "seed": 0},
                                "scenarios": {}}))
    assert resumable_results(path, "m", scenarios, ["sdpo"], samples=4, seed=0, settings=settings) == {}
    other = TrainSettings(steps_per_feedback=2, learning_rate=1e-4, rollouts=4, replay=True)
    with pytest.raises(UsageError, match="other settings"):
        resumable_results(path, "m", scenarios, ["sdpo"], samples=4, seed=0, settings=other)


def test_icl_prefix_is_asked_for_by_name_and_shows_the_feedback_first():
    from continualcode.evals.learning_bench import DEFAULT_METHODS, ICL, METHODS
    from continualcode.evals.learning_methods import icl_messages

    assert "icl-prefix" in METHODS and "icl-prefix" not in DEFAULT_METHODS
    shown = icl_messages(USER, [("followup", "Be brief.")], ICL["icl-prefix"])
    assert shown == [{"role": "user", "content": "Be brief.\n\nhi"}]


def test_icl_instruction_shows_the_feedback_as_a_standing_instruction():
    from continualcode.evals.learning_methods import icl_messages

    hindsight = icl_messages(USER, [("followup", "Be brief.")])[0]["content"]
    instruction = icl_messages(USER, [("followup", "Be brief.")], "instruction")[0]["content"]
    assert "[Hindsight]" in hindsight and "[Standing instruction]" in instruction and "Be brief." in instruction


# ----------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def learner(small_model):
    from continualcode.evals.learning_methods import load_learner

    return load_learner(small_model.name)


@pytest.mark.slow
def test_batched_generation_matches_one_prompt_at_a_time(learner):
    """Left padding must not change an answer: greedy, alone vs. beside a longer prompt."""
    from continualcode.learning.sampler import generate

    short = [{"role": "user", "content": "What is the capital of France?"}]
    long = [{"role": "user", "content": "Write a Python function add(a, b) that returns the sum, and explain it."}]
    [[alone]] = generate(learner.model, learner.tokenizer, [short], max_new_tokens=10, temperature=0)
    [[batched], _] = generate(learner.model, learner.tokenizer, [short, long], max_new_tokens=10, temperature=0)
    assert batched.token_ids == alone.token_ids
    assert len(alone.logprobs) == len(alone.token_ids) and all(lp <= 0 for lp in alone.logprobs)


@pytest.mark.slow
def test_sdpo_training_changes_the_weights_and_reset_restores_base(learner):
    from continualcode.evals.learning_methods import TrainSettings, train_on_feedback
    from continualcode.learning.lora import lora_parameters

    before = {k: p.detach().clone() for k, p in lora_parameters(learner.model).items()}
    items = [{"messages": [{"role": "user", "content": "What is 7 * 8?"}],
              "feedback": "Answer with the number only.", "kind": "followup"}]
    metrics = train_on_feedback(learner, items, "sdpo", TrainSettings(steps_per_feedback=2, learning_rate=1e-3,
                                                                      max_new_tokens=12), seed=0)
    assert metrics["steps"] == 2 and metrics["stepped"] == 2 and metrics["mean_advantage"] is not None
    after = lora_parameters(learner.model)
    assert any(not (after[k] == before[k]).all() for k in before)
    learner.reset()
    assert all((after[k] == before[k]).all() for k in before)


@pytest.mark.slow
def test_gate_undoes_an_event_that_wrecks_the_general_answers(learner, monkeypatch):
    """--gate: the REPL's promotion gate after each event, on the real SmolLM2; an event whose training
    wrecked the weights is rejected and undone, a harmless one is kept."""
    import torch

    from continualcode.evals import learning_methods
    from continualcode.evals.learning_methods import TrainSettings, train_on_feedback
    from continualcode.learning.lora import lora_parameters

    def event(scale: float):
        def learn(learner_, example, recipe, **_):
            with torch.no_grad():
                for name, param in lora_parameters(learner_.model).items():
                    if "lora_B" in name:
                        param.add_(torch.randn_like(param) * scale)
            return {"history": [], "rollouts": 0, "teacher_samples": 0, "expanded": 0, "replayed": 0,
                    "by_kind": {}, "expansion_prompts": [], "seconds": 0.0}
        return learn

    items = [{"messages": [{"role": "user", "content": "What is 7 * 8?"}], "feedback": "Just the number.",
              "kind": "followup"}]
    settings = TrainSettings(steps_per_feedback=1, learning_rate=1e-4, max_new_tokens=8, gate=True)
    learner.reset(settings.sdpo_config())
    before = {k: p.detach().clone() for k, p in lora_parameters(learner.model).items()}
    monkeypatch.setattr(learning_methods, "learn_from_feedback", event(3.0))
    wrecked = train_on_feedback(learner, items, "sdpo", settings, seed=0)
    assert wrecked["rejected"] == 1 and "replay pass rate fell" in wrecked["gate"][0]["reason"]
    after = lora_parameters(learner.model)
    assert all(torch.equal(after[k], before[k]) for k in before)  # undone

    monkeypatch.setattr(learning_methods, "learn_from_feedback", event(0.0))
    kept = train_on_feedback(learner, items, "sdpo", settings, seed=0)
    assert kept["rejected"] == 0 and kept["gate"][0]["decision"] == "promoted"
    learner.reset()


@pytest.mark.slow
def test_bench_cli_on_smollm2_prints_tables_and_json_from_real_checks(tmp_path, small_model, capsys):
    france = [{"role": "user", "content": "What is the capital of France?"}]
    path = write(tmp_path / "tiny.jsonl",
                 {"id": "easy", "category": "format",
                  "train": [{"messages": [{"role": "user", "content": "What is the capital of Italy?"}],
                             "feedback": "One word only."}],
                  "eval": [{"messages": france, "pass_regex": "Paris"},
                           {"messages": france, "pass_regex": "ZZZ never written"}],
                  "general": [{"messages": france, "fail_regex": "Paris"}]},
                 {"id": "second", "train": [{"messages": france, "feedback": "Shorter.", "kind": "tool_error"}],
                  "eval": [{"messages": france, "pass_regex": "(?i)paris"}]})
    common = ["bench", "learn", "--model", small_model.name, "--scenarios", str(path), "--samples", "2",
              "--max-new-tokens", "12", "--steps-per-feedback", "1", "--temperature", "0"]
    assert main([*common, "--json", "--method", "base", "--method", "sdpo"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["scenarios"]) == {"easy", "second"}
    base = report["scenarios"]["easy"]["base"]
    # Greedy SmolLM2 says "The capital of France is Paris.": the real regexes decide.
    assert base["eval_items"] == [1.0, 0.0] and base["eval"] == 0.5 and base["general_items"] == [0.0]
    assert report["scenarios"]["second"]["base"]["general"] is None
    sdpo = report["scenarios"]["easy"]["sdpo"]
    assert sdpo["train"]["steps"] == 1 and sdpo["train"]["seconds"] > 0
    assert set(report["overall"]["methods"]) == {"base", "sdpo"} and "sdpo_over_icl" not in report["overall"]

    assert main([*common, "--only", "easy", "--method", "base", "--method", "icl"]) == 0
    out = capsys.readouterr().out
    assert "easy" in out and "overall" in out and "icl" in out and "sdpo ÷ icl" not in out


@pytest.mark.slow
def test_bench_cli_runs_every_lever_through_the_recipe(tmp_path, small_model, capsys):
    """All levers at once on SmolLM2 (tiny budget): the report records them, counts what each fed to the
    steps, and has seconds per feedback and bootstrap intervals."""
    france = [{"role": "user", "content": "What is the capital of France?"}]
    path = write(tmp_path / "tiny.jsonl",
                 {"id": "easy", "train": [{"messages": [{"role": "user", "content": "What is the capital of Italy?"}],
                                           "feedback": "One word only."},
                                          {"messages": [{"role": "user", "content": "What is the capital of Spain?"}],
                                           "feedback": "One word only."}],
                  "eval": [{"messages": france, "pass_regex": "Paris"}],
                  "general": [{"messages": [{"role": "user", "content": "What is 2 + 3?"}], "pass_regex": "5"}]})
    out = tmp_path / "report.json"
    assert main(["bench", "learn", "--model", small_model.name, "--scenarios", str(path), "--samples", "1",
                 "--max-new-tokens", "6", "--steps-per-feedback", "1", "--method", "base", "--method", "sdpo",
                 "--rollouts", "2", "--rounds", "2", "--expand", "1", "--teacher-samples", "0.5", "--replay",
                 "--support", "union", "--cache-teacher", "--out", str(out), "--markdown"]) == 0
    report = json.loads(out.read_text())
    assert {k: report["settings"][k] for k in ("rollouts", "rounds", "expand", "teacher_samples", "replay",
                                               "support", "cache_teacher")} == \
        {"rollouts": 2, "rounds": 2, "expand": 1, "teacher_samples": 0.5, "replay": True, "support": "union",
         "cache_teacher": True}
    train = report["scenarios"]["easy"]["sdpo"]["train"]
    assert train["events"] == 2 and train["steps"] == 4 and train["seconds_per_event"] > 0
    assert train["rollouts"] == 4 and train["teacher_samples"] == 4 and train["replayed"] > 0
    assert train["expanded"] >= 1 and train["expansion_prompts"][1][0] == "What is the capital of Italy?"
    assert {"judged", "rollout", "teacher", "replay", "expansion"} <= set(train["by_kind"])
    overall = report["overall"]["methods"]["sdpo"]
    assert overall["seconds_per_event"] > 0 and len(overall["eval_ci"]) == 2
    assert "seconds per feedback" in capsys.readouterr().out


def test_baseline_reuses_untrained_methods_only_when_sampled_the_same_way(tmp_path):
    from continualcode.evals.learning_bench import reusable_results
    from continualcode.evals.learning_methods import TrainSettings

    scenarios = load_scenarios(write(tmp_path / "s.jsonl", scenario("a")))
    settings = TrainSettings(steps_per_feedback=2, learning_rate=1e-4)
    row = {"eval": 0.5, "general": None, "eval_items": [0.5], "general_items": [], "train": None}
    earlier = {"model": "m", "settings": {"samples": 4, "seed": 0, "temperature": settings.temperature,
                                          "max_new_tokens": settings.max_new_tokens},
               "scenarios": {"a": {"base": row, "icl": row, "sdpo": row}}}
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    reused = reusable_results(path, "m", scenarios, samples=4, seed=0, settings=settings)
    assert set(reused["a"]) == {"base", "icl"}  # sdpo depends on lr and steps: never reused
    with pytest.raises(UsageError, match="sampled differently"):
        reusable_results(path, "m", scenarios, samples=2, seed=0, settings=settings)
    # Answers judged under the REPL's system prompt are never mixed with answers judged without it.
    with pytest.raises(UsageError, match="sampled differently"):
        reusable_results(path, "m", scenarios, samples=4, seed=0,
                         settings=TrainSettings(steps_per_feedback=2, learning_rate=1e-4, system="agent"))


def test_system_agent_puts_every_conversation_under_the_repl_system_prompt(tmp_path):
    import argparse

    from continualcode.commands.bench import register_bench, train_settings
    from continualcode.evals.learning_bench import agent_system_prompt, with_system

    own = [{"role": "system", "content": "Tools: none."}, *USER]
    scenarios = load_scenarios(write(tmp_path / "s.jsonl", scenario("a", general=[{"messages": own, "pass_regex": "x"}])))
    text = agent_system_prompt()
    assert "read_file" in text and "run_tests" in text  # the REPL's tools and call format
    [under] = with_system(scenarios, text)
    assert under.train[0]["messages"] == [{"role": "system", "content": text}, *USER]
    assert under.eval[0].messages == [{"role": "system", "content": text}, *USER]
    assert under.general[0].messages == own  # a conversation with its own system prompt keeps it
    assert scenarios[0].eval[0].messages == USER  # the loaded scenarios are not changed
    parser = argparse.ArgumentParser()
    register_bench(parser)
    assert train_settings(parser.parse_args(["learn", "--system", "agent"]), "smollm2-135m").system == "agent"
    assert train_settings(parser.parse_args(["learn", "--followup-template", "prefix"]),
                          "smollm2-135m").followup_template == "prefix"
    args = parser.parse_args(["learn", "--replay", "--replay-weight", "0.5"])
    assert train_settings(args, "smollm2-135m").sdpo_config().replay_weight == 0.5
    with pytest.raises(UsageError, match="replay_weight"):
        train_settings(parser.parse_args(["learn", "--replay-weight", "-1"]), "smollm2-135m")


def test_markdown_has_a_row_per_scenario_and_the_overall_ratios():
    from continualcode.evals.learning_tables import render_markdown

    def result(eval_, general):
        return {"eval": eval_, "general": general, "train": None}
    per = {"a": {"base": result(0.0, 1.0), "icl": result(0.5, 1.0), "sdpo": result(0.25, 0.5)}}
    text = render_markdown({"scenarios": per, "overall": summarize(per)})
    assert "| a | 0.00 / 1.00 | 0.50 / 1.00 | 0.25 / 0.50 |" in text
    assert "| Δ general vs base | +0.00 | +0.00 | -0.50 |" in text and "sdpo ÷ icl (eval): 0.50" in text


def test_resume_keeps_finished_scenarios_and_refuses_other_settings(tmp_path, small_model, capsys):
    france = [{"role": "user", "content": "What is the capital of France?"}]
    path = write(tmp_path / "two.jsonl",
                 {"id": "first", "train": [{"messages": france, "feedback": "One word."}],
                  "eval": [{"messages": france, "pass_regex": "Paris"}]},
                 {"id": "second", "train": [{"messages": france, "feedback": "One word."}],
                  "eval": [{"messages": france, "pass_regex": "(?i)paris"}]})
    out = tmp_path / "report.json"
    common = ["bench", "learn", "--model", small_model.name, "--scenarios", str(path), "--samples", "1",
              "--max-new-tokens", "8", "--temperature", "0", "--method", "base", "--out", str(out), "--json"]
    assert main(common) == 0
    first = json.loads(out.read_text())
    assert set(first["scenarios"]) == {"first", "second"}
    # An interrupted run: "second" never finished, and "first" carries a marker no real run writes.
    first["scenarios"]["first"]["base"]["marker"] = "kept"
    del first["scenarios"]["second"]
    out.write_text(json.dumps(first))
    capsys.readouterr()
    assert main([*common, "--resume"]) == 0
    resumed = json.loads(out.read_text())
    assert resumed["scenarios"]["first"]["base"]["marker"] == "kept"
    assert "marker" not in resumed["scenarios"]["second"]["base"]
    assert resumed["scenarios"]["second"]["base"]["eval_items"] == [1.0]
    capsys.readouterr()
    assert main([*common, "--resume", "--samples", "2"]) != 0
    assert "other settings" in capsys.readouterr().err
    assert json.loads(out.read_text()) == resumed  # the refused run wrote nothing
    assert main(["bench", "learn", "--model", small_model.name, "--scenarios", str(path), "--resume"]) != 0
    assert "needs --out" in capsys.readouterr().err


def test_learn_table_combines_reports_and_adds_labelled_columns():
    import importlib.util

    spec = importlib.util.spec_from_file_location("learn_table", Path(__file__).parents[2] / "bench" / "learn_table.py")
    learn_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learn_table)

    def report(methods: dict, **settings) -> dict:
        sampled = {"samples": 2, "seed": 0, "temperature": 0.3, "max_new_tokens": 80, **settings}
        return {"model": "m", "settings": sampled,
                "scenarios": {"a": {m: {"eval": e, "general": g, "train": None} for m, (e, g) in methods.items()}}}
    first = report({"base": (0.0, 1.0), "icl": (0.5, 0.5), "sdpo": (0.25, 0.75)})
    tuned = report({"sdpo": (0.5, 1.0)})
    variant = report({"sdpo": (0.75, 0.25)})
    combined = learn_table.combine([first, tuned], {"sdpo other": variant})
    methods = combined["overall"]["methods"]
    assert list(methods) == ["base", "icl", "sdpo", "sdpo other"]  # the label after the four methods
    assert methods["sdpo"]["eval"] == 0.5 and methods["sdpo other"]["general_change"] == -0.75
    assert "| a | 0.00 / 1.00 | 0.50 / 0.50 | 0.50 / 1.00 | 0.75 / 0.25 |" in learn_table.render_markdown(combined)
    with pytest.raises(SystemExit, match="sampled differently"):
        learn_table.combine([first, report({"sdpo": (1.0, 1.0)}, samples=4)])
    with pytest.raises(SystemExit, match="sampled differently"):  # judged under the REPL's system prompt
        learn_table.combine([first], {"agent": report({"sdpo": (1.0, 1.0)}, system="agent")})
    assert learn_table.combine([first, report({"sdpo": (1.0, 1.0)}, system="none")])  # = a report from before


@pytest.mark.parametrize("followup_template,kind,expected", [("hindsight", "followup", "hindsight"),
                                                             ("prefix", "followup", "prefix"),
                                                             ("prefix", "denial", "reprompt")])
def test_followup_template_is_the_teacher_template_of_followup_items_only(monkeypatch, followup_template, kind,
                                                                         expected):
    from types import SimpleNamespace

    from continualcode.evals import learning_methods
    from continualcode.evals.learning_methods import TrainSettings, train_on_feedback

    made = []

    class Learner:
        def sample(self, conversations, **_):
            return [[SimpleNamespace(text="y", token_ids=[1], logprobs=[-0.1])] for _ in conversations]

        def example(self, messages, text, **kwargs):
            made.append(kwargs["template"])
            return kwargs

    event = {"history": [], "rollouts": 0, "teacher_samples": 0, "expanded": 0, "replayed": 0, "by_kind": {},
             "expansion_prompts": []}
    monkeypatch.setattr(learning_methods, "learn_from_feedback", lambda *a, **k: event)
    settings = TrainSettings(steps_per_feedback=1, learning_rate=1e-4, followup_template=followup_template)
    train_on_feedback(Learner(), [{"messages": USER, "feedback": "Be brief.", "kind": kind}], "sdpo", settings, 0)
    assert made == [expected]


def test_answers_that_loop_are_counted_even_where_the_regex_passes():
    from types import SimpleNamespace

    from continualcode.evals.learning_bench import pass_rates
    from continualcode.evals.learning_tables import render_markdown

    answers = {"Name three fruits.": ["- Apple\n- Pear\n- Plum", "- Fig\n- Fig\n- Fig\n- Fig\n- Fig\n- Fig"],
               "Name three planets.": ["Mars, Venus, Earth", ""]}

    class Learner:
        def sample(self, conversations, n, **_):
            return [[SimpleNamespace(text=t) for t in answers[c[-1]["content"]][:n]] for c in conversations]

    checks = [Check([{"role": "user", "content": q}], pass_regex=[r"(?m)^- \S"]) for q in answers]
    rates, shown, looped = pass_rates(Learner(), checks, n=2, max_new_tokens=8, temperature=0.0, seed=0)
    assert rates == [1.0, 0.0] and shown == ["- Apple\n- Pear\n- Plum", "Mars, Venus, Earth"]
    assert looped == pytest.approx(2 / 4)  # the repeated fig, and the empty answer
    per = {"a": {"base": {"eval": 0.5, "general": 1.0, "train": None, "looped": 0.5},
                 "sdpo": {"eval": 1.0, "general": 1.0, "train": None, "looped": 0.0}},
           "b": {"base": {"eval": 0.0, "general": 1.0, "train": None, "looped": 0.25},
                 "sdpo": {"eval": 1.0, "general": 1.0, "train": None}}}  # a report from before the count
    overall = summarize(per)
    assert overall["methods"]["base"]["looped"] == pytest.approx(0.375)
    assert overall["methods"]["sdpo"]["looped"] == 0.0
    assert "| answers that loop | 0.38 | 0.00 |" in render_markdown({"scenarios": per, "overall": overall})
