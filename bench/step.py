"""What an SDPO step costs next to plain LoRA fine-tuning, and whether the defaults stay sane.

Timing (default): on the same tokens and model, ``sdpo_step`` time ÷ ``sft_step``
time (cross-entropy on y), with top-K = 100 and with the full vocabulary, at
batch 1 and 4, for each bundled model. Modes run round-robin so machine load
hits them alike; the median of the repeats is reported. The teacher forward
alone is timed too: SFT + teacher forward is the floor of an SDPO step.
Peak memory: each (model, batch, mode) runs in a fresh child process with
large allocations forced to mmap (so freed memory leaves RSS); after one warm
step the kernel's peak-RSS mark is reset and one more step measured.

Stability (``--stability``): the planning probe that collapsed SmolLM2 (live
teacher, lr 5e-4, 30 steps on one feedback) next to the defaults (EMA teacher,
gradient clip) at the preset's or the given learning rates: one feedback
trained 2, 4, 10 steps, scored on the trained answer and on unrelated probe
questions that must keep their correct answers.

    python bench/step.py                      # both models, batch 1 and 4
    python bench/step.py --quick --models smollm2-135m
    python bench/step.py --stability --models smollm2-135m --lrs 2e-5 5e-5 1e-4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import torch

from continualcode.adapters.presets import preset_for
from continualcode.learning.lora import attach_lora
from continualcode.learning.sdpo import (
    TeacherState,
    build_batch,
    make_optimizer,
    response_logits,
    sdpo_step,
    sft_step,
)
from continualcode.learning.types import SDPOConfig, TrainingExample
from continualcode.models import resolve

MODES = ("sft", "sdpo_top100", "sdpo_full")
CODE = "def parse_config(path):\n    with open(path) as handle:\n        data = json.load(handle)\n    return data\n"


DTYPE = "auto"  # set from --dtype; "auto" = what the trainer picks (bf16 on CPUs with native bf16)


def load(model_name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from continualcode.engines.loading import pick_dtype

    for attempt in range(3):  # another process may be assembling the model right now
        try:
            path = resolve(model_name).path
            break
        except Exception as error:  # noqa: BLE001 - reported, then retried
            print(f"resolve({model_name!r}) failed ({error}); retrying in 30 s", file=sys.stderr)
            time.sleep(30)
    else:
        raise SystemExit(f"could not resolve {model_name!r}; run `python -m continualcode.models` first")
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = attach_lora(AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(DTYPE, "cpu")), preset_for(path))
    return model, tokenizer, preset_for(path)


def examples(tokenizer, batch: int, prompt_tokens: int, response_tokens: int) -> list[TrainingExample]:
    """Synthetic coding turns: ~prompt_tokens of x, exactly response_tokens of y, a test-failure feedback."""
    out = []
    for i in range(batch):
        prompt = f"Task {i}: fix the bug in this module.\n"
        while len(tokenizer(prompt)["input_ids"]) < prompt_tokens:
            prompt += CODE
        response = tokenizer(("Here is the fix:\n" + CODE) * 20, add_special_tokens=False)["input_ids"]
        response = response[: response_tokens - 1] + [tokenizer.eos_token_id]
        feedback = f"pytest: FAILED tests/test_config.py::test_parse_{i} - KeyError: 'name' (the loader must "
        feedback += "return defaults when a key is missing)."
        out.append(TrainingExample([{"role": "user", "content": prompt}], response, feedback=feedback))
    return out


def run_mode(mode: str, model, tokenizer, optimizer, batch, teacher) -> tuple[float, float]:
    """Run one step of ``mode``; return (wall seconds, process CPU seconds)."""
    started, cpu = time.perf_counter(), time.process_time()
    if mode == "sft":
        sft_step(model, tokenizer, optimizer, batch, SDPOConfig())
    elif mode == "teacher_forward":
        b = build_batch(tokenizer, batch, SDPOConfig())
        teacher.logits(model, lambda: response_logits(model, b.teacher_ids, b.teacher_attention,
                                                      b.teacher_positions, b.response_length))
    else:
        top_k = 100 if mode == "sdpo_top100" else None
        sdpo_step(model, tokenizer, optimizer, batch, SDPOConfig(top_k=top_k), teacher)
    return time.perf_counter() - started, time.process_time() - cpu


def time_model(name: str, batches: list[int], repeats: int, prompt_tokens: int, response_tokens: int) -> list[dict]:
    model, tokenizer, preset = load(name)
    optimizer = make_optimizer(model, preset.learning_rate)
    teacher = TeacherState.create(model, "ema")
    rows = []
    for size in batches:
        batch = examples(tokenizer, size, prompt_tokens, response_tokens)
        modes = (*MODES, "teacher_forward")
        for mode in modes:  # warm-up: allocator, Adam state, lazy inits
            run_mode(mode, model, tokenizer, optimizer, batch, teacher)
        wall: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(repeats):
            for mode in modes:
                seconds, cpu_seconds = run_mode(mode, model, tokenizer, optimizer, batch, teacher)
                wall[mode].append(seconds)
                cpu[mode].append(cpu_seconds)
        row = {"model": name, "batch": size, "wall": {m: statistics.median(t) for m, t in wall.items()},
               "cpu": {m: statistics.median(t) for m, t in cpu.items()}}
        rows.append(row)
        print(f"  {name} batch {size}: " + ", ".join(
            f"{m} {row['wall'][m]:.2f}s wall / {row['cpu'][m]:.2f}s cpu" for m in modes), file=sys.stderr)
    return rows


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def child_memory(name: str, size: int, mode: str, prompt_tokens: int, response_tokens: int) -> None:
    """Peak RSS growth (MiB) of one warm step, printed as JSON (run in a fresh process)."""
    model, tokenizer, preset = load(name)
    optimizer = make_optimizer(model, preset.learning_rate)
    teacher = TeacherState.create(model, "ema")
    batch = examples(tokenizer, size, prompt_tokens, response_tokens)
    run_mode(mode, model, tokenizer, optimizer, batch, teacher)
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak-RSS mark (VmHWM)
    run_mode(mode, model, tokenizer, optimizer, batch, teacher)
    print(json.dumps({"peak_mib": (_status_kb("VmHWM") - before) / 1024}))


def memory(name: str, size: int, mode: str, prompt_tokens: int, response_tokens: int) -> float:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run([sys.executable, __file__, "--child", name, str(size), mode, "--dtype", DTYPE,
                             "--prompt-tokens",
                             str(prompt_tokens), "--response-tokens", str(response_tokens)],
                            capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def print_table(rows: list[dict]) -> None:
    """Ratios on process CPU time (robust when other jobs share the cores) and on wall time."""
    print("| model | batch | SFT s (cpu) | SDPO top-100 s | **ratio** | SDPO full-vocab s | ratio | floor: SFT + "
          "teacher fwd | wall ratio top-100 / full | peak MiB SFT / top-100 / full |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c, w = r["cpu"], r["wall"]
        mem = r.get("memory", {})
        memory_text = " / ".join(f"{mem[m]:.0f}" for m in MODES) if mem else "-"
        print(f"| {r['model']} | {r['batch']} | {c['sft']:.2f} | {c['sdpo_top100']:.2f} | "
              f"**{c['sdpo_top100'] / c['sft']:.2f}** | {c['sdpo_full']:.2f} | {c['sdpo_full'] / c['sft']:.2f} | "
              f"{(c['sft'] + c['teacher_forward']) / c['sft']:.2f} | "
              f"{w['sdpo_top100'] / w['sft']:.2f} / {w['sdpo_full'] / w['sft']:.2f} | {memory_text} |")


# --------------------------------------------------------------------- stability

PROBES = [("What is the capital of France?", "The capital of France is Paris.", r"Paris"),
          ("What is 2 + 2?", "2 + 2 = 4", r"\b4\b"),
          ("Write a Python function add(a, b) that returns a + b.", "def add(a, b):\n    return a + b", r"def add"),
          ("Is fire cold? Answer YES or NO.", "NO", r"\bN[Oo]\b")]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _logprob(model, tokenizer, messages, text: str) -> float:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    b = build_batch(tokenizer, [TrainingExample(messages, ids)], SDPOConfig(), teacher=False)
    model.eval()
    with torch.no_grad():
        logits = response_logits(model, b.student_ids, b.student_attention, b.student_positions, b.response_length)
    return torch.log_softmax(logits.float(), -1)[0].gather(-1, b.response_ids[0, :, None]).sum().item()


def _answer(model, tokenizer, messages) -> str:
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    model.eval()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


SCENARIOS = {
    # A format rule the sampled answer broke; the compliant answer is also the correct one.
    "yes/no": ("Is the sky blue? Answer YES or NO.", 'The answer is "No."', "I said YES or NO only.", "YES"),
    # A wrong fact; the feedback names the wrong answer (small teachers copy it: see docs/sdpo.md).
    "france": ("What is the capital of France?", "The capital of France is Lyon.",
               "Wrong: the capital of France is Paris, not Lyon.", "The capital of France is Paris."),
}


def stability(name: str, lrs: list[float] | None, checkpoints: list[int], planning_probe: bool) -> None:
    """Train one feedback repeatedly; after each checkpoint score the trained margin and unrelated probes."""
    preset = preset_for(resolve(name).path)
    print(f"\n{name} ({DTYPE}): one feedback trained N steps; margin = log p(good) − log p(sampled) on the trained "
          "prompt; probes = unrelated questions that must keep their answers")
    print("| scenario | teacher, lr | steps | trained margin | probes correct | worst Δ log p(probe answer) "
          "| answer to 'What is 2 + 2?' |")
    print("|---|---|---|---|---|---|---|")
    runs = [(scenario, SDPOConfig(learning_rate=lr), checkpoints)
            for scenario in SCENARIOS for lr in (lrs or [preset.learning_rate])]
    if planning_probe:
        runs.insert(0, ("yes/no", SDPOConfig(teacher="live", learning_rate=5e-4), [30]))
    for scenario, config, marks in runs:
        question, sampled, feedback, good = SCENARIOS[scenario]
        model, tokenizer, _ = load(name)
        eos, x = tokenizer.eos_token, _user(question)
        example = TrainingExample(x, tokenizer(sampled + eos, add_special_tokens=False)["input_ids"],
                                  feedback=feedback)

        def margin() -> float:
            return _logprob(model, tokenizer, x, good + eos) - _logprob(model, tokenizer, x, sampled + eos)

        margin0 = margin()
        base = [_logprob(model, tokenizer, _user(q), a) for q, a, _ in PROBES]
        teacher = TeacherState.create(model, config.teacher, config.teacher_update_rate)
        optimizer = make_optimizer(model, config.learning_rate)
        done = 0
        for mark in marks:
            for _ in range(mark - done):
                sdpo_step(model, tokenizer, optimizer, [example], config, teacher)
            done = mark
            after = [_logprob(model, tokenizer, _user(q), a) for q, a, _ in PROBES]
            correct = sum(bool(re.search(rx, _answer(model, tokenizer, _user(q)))) for q, _, rx in PROBES)
            sample = _answer(model, tokenizer, _user(PROBES[1][0])).replace("\n", "\\n")[:36]
            print(f"| {scenario} | {config.teacher}, {config.learning_rate:g} | {mark} | {margin0:+.2f} → "
                  f"{margin():+.2f} | {correct}/{len(PROBES)} | {min(a - b for a, b in zip(after, base)):+.2f} | "
                  f"`{sample}` |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--response-tokens", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="2 repeats, prompt 128 + response 64, no memory runs")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-mode peak-memory child processes")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory child processes")
    parser.add_argument("--stability", action="store_true", help="run the non-collapse probe instead of timing")
    parser.add_argument("--lrs", nargs="+", type=float, help="--stability: learning rates (default: the preset's)")
    parser.add_argument("--checkpoints", nargs="+", type=int, default=[2, 4, 10], help="--stability: steps to score at")
    parser.add_argument("--no-planning-probe", action="store_true", help="--stability: skip the live-teacher run")
    parser.add_argument("--dtype", default="auto", help="auto (the trainer's choice), fp32 or bf16")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "BATCH", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DTYPE
    DTYPE = args.dtype
    if args.child:
        child_memory(args.child[0], int(args.child[1]), args.child[2], args.prompt_tokens, args.response_tokens)
        return
    if args.stability:
        for name in args.models:
            stability(name, args.lrs, sorted(args.checkpoints), not args.no_planning_probe)
        return
    if args.quick:
        args.repeats, args.prompt_tokens, args.response_tokens, args.no_memory = 2, 128, 64, True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dtype {DTYPE}, prompt {args.prompt_tokens} + response "
          f"{args.response_tokens} tokens, median of {args.repeats}", file=sys.stderr)
    if args.memory_only:
        print("| model | batch | peak MiB SFT | SDPO top-100 | SDPO full vocabulary |\n|---|---|---|---|---|")
        for name in args.models:
            for size in args.batches:
                mem = [memory(name, size, m, args.prompt_tokens, args.response_tokens) for m in MODES]
                print(f"| {name} | {size} | " + " | ".join(f"{v:.0f}" for v in mem) + " |", flush=True)
        return
    rows = []
    for name in args.models:
        rows += time_model(name, args.batches, args.repeats, args.prompt_tokens, args.response_tokens)
    if not args.no_memory:
        for row in rows:
            row["memory"] = {m: memory(row["model"], row["batch"], m, args.prompt_tokens, args.response_tokens)
                             for m in MODES}
    print_table(rows)


if __name__ == "__main__":
    main()
