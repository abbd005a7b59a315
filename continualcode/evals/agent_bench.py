"""`continualcode bench agent`: does the agent fix real bugs? Resolve rate on tiny repositories.

A task (one JSON object per line; bench/tasks/README.md) is a small repository
given inline, a request and a check command. Each task runs in a fresh
temporary git repository exactly as a user's `continualcode -p REQUEST --yes
--json` would (the real headless path: `ui.headless.run_headless`, the same
agent, tools and repair flow), with one engine loaded once for the whole run.
Resolved = the check passes afterwards and no protected test file changed.

With `learn`, the tasks run in order against ONE store and adapter registry
(every task's `.continualcode/` is a link to a shared state directory) with
the trainer on, so later tasks are answered by the adapters the earlier
tasks' feedback trained; the report splits the resolve rate into halves so a
`--learn` run can be compared with a `--no-learn` run of the same seeds.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from continualcode.config import UsageError

DEFAULT_TASKS = Path(__file__).resolve().parent / "sets" / "agent_public.jsonl"
"""The public task set (bench/tasks/public.jsonl in a checkout; shipped inside the package)."""
CHECK_TIMEOUT_S = 120.0
BOOTSTRAP = 2000
_GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@continualcode.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@continualcode.invalid"}


@dataclass
class AgentTask:
    id: str
    request: str
    files: dict[str, str]
    tests: list[str]
    check: str = "python -m pytest -q"
    source: str = ""
    kind: str = ""
    fix: dict | None = None
    mutation: dict | None = None


def parse_task(raw: dict, where: str) -> AgentTask:
    """Validate one task object; errors name the line and the field to fix."""
    if not isinstance(raw, dict) or not raw.get("id"):
        raise UsageError(f"{where}: a task is a JSON object with an 'id'")
    files = raw.get("files")
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        raise UsageError(f"{where} ({raw['id']}): 'files' must map paths to file texts")
    for path in files:
        if path.startswith("/") or ".." in Path(path).parts or Path(path).parts[:1] == (".git",):
            raise UsageError(f"{where} ({raw['id']}): file path {path!r} must stay inside the repository")
    tests = raw.get("tests") or []
    missing = [t for t in tests if t not in files]
    if missing:
        raise UsageError(f"{where} ({raw['id']}): protected tests {missing} are not in 'files'")
    if not str(raw.get("request") or "").strip():
        raise UsageError(f"{where} ({raw['id']}): needs a 'request'")
    return AgentTask(id=str(raw["id"]), request=raw["request"], files=dict(files), tests=list(tests),
                     check=raw.get("check") or "python -m pytest -q", source=str(raw.get("source", "")),
                     kind=str(raw.get("kind", "")), fix=raw.get("fix"), mutation=raw.get("mutation"))


def load_tasks(path: Path | str, only: list[str] | None = None) -> list[AgentTask]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--tasks {path}: no such file (the public set is {DEFAULT_TASKS})")
    tasks = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON ({exc})") from exc
        tasks.append(parse_task(raw, f"{path}:{number}"))
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise UsageError(f"{path}: duplicate task ids")
    if only:
        unknown = sorted(set(only) - set(ids))
        if unknown:
            raise UsageError(f"--only {', '.join(unknown)}: no such task in {path}")
        tasks = [t for t in tasks if t.id in only]
    return tasks


# -- one task ---------------------------------------------------------------------------------

def materialize(task: AgentTask, directory: Path) -> Path:
    """The task's repository: its files, committed, in a fresh git repo under `directory`."""
    repo = directory / "repo"
    repo.mkdir(parents=True)
    for rel, text in task.files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {**os.environ, **_GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "--no-verify", "-m", "task"]):
        subprocess.run(["git", "-c", "core.hooksPath=/dev/null", *args], cwd=repo, env=env, check=True,
                       capture_output=True)
    return repo


def check_command(task: AgentTask) -> str:
    """The task's check with `python` meaning this interpreter (its venv has pytest)."""
    command = task.check.strip()
    if command == "python" or command.startswith("python "):
        command = shlex.quote(sys.executable) + command[len("python"):]
    return command


def grade(task: AgentTask, repo: Path) -> dict:
    """Resolved = the check passes and every protected test file is byte-identical."""
    changed = [t for t in task.tests if not (repo / t).is_file() or (repo / t).read_text() != task.files[t]]
    try:
        done = subprocess.run(["bash", "-c", check_command(task)], cwd=repo, capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL,
                              env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")})
        passed, output = done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        passed, output = False, f"check timed out after {CHECK_TIMEOUT_S:g} s"
    return {"resolved": passed and not changed, "check_passed": passed, "tests_changed": changed,
            "check_output": output}


def final_diff(repo: Path) -> str:
    """What the agent changed, against the task's commit (untracked files included)."""
    subprocess.run(["git", "add", "-A", "--", ".", ":(exclude).continualcode"], cwd=repo, capture_output=True)
    done = subprocess.run(["git", "diff", "--cached", "--no-color", "HEAD"], cwd=repo, capture_output=True, text=True)
    return done.stdout


def task_seed(task_id: str, seed: int) -> int:
    """The same sampling seed for a task in every run (learn and no-learn compare like with like)."""
    return zlib.crc32(f"{seed}:{task_id}".encode()) & 0x7FFFFFFF


@dataclass
class BenchContext:
    """What stays loaded across tasks: the engine, and with learning the shared state and trainer."""

    engine: object
    settings: object
    state: Path | None = None          # shared .continualcode/ for --learn
    trainer: object | None = None      # --learn: trained between tasks (train_between), never beside one
    learn_examples: int | None = None  # --learn: examples trained per task (None = all)
    solved_only: bool = False          # --learn: train only examples with a passing sibling's solution
    extra: dict = field(default_factory=dict)


def run_task(task: AgentTask, context: BenchContext, *, seed: int, max_turns: int | None) -> dict:
    """Run one task through the headless path and grade it; the per-task record of the report."""
    import dataclasses

    from continualcode.ui.headless import run_headless

    with tempfile.TemporaryDirectory(prefix="continualcode-bench-") as tmp:
        repo = materialize(task, Path(tmp))
        if context.state is not None:
            (repo / ".continualcode").symlink_to(context.state, target_is_directory=True)
        settings = dataclasses.replace(context.settings, seed=task_seed(task.id, seed),
                                       **({"max_turns": max_turns} if max_turns else {}))
        started = time.perf_counter()
        error = None
        try:
            run = run_headless(repo, settings, task.request, yes=True, engine=context.engine,
                               trainer=context.trainer, start_trainer=False)
            report = run.report
        except Exception as exc:  # a crash is a failed task, with its reason in the report
            report, error = {}, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        graded = grade(task, repo)
        diff = final_diff(repo)
    feedback = report.get("feedback", [])
    repair = report.get("repair") or {}
    return {
        "id": task.id, "kind": task.kind, "source": task.source, **graded,
        "seconds": round(seconds, 2), "turns": report.get("turns", 0),
        "tool_calls": len(report.get("tool_calls", [])),
        "parse_failures": sum(1 for f in feedback if f.get("kind") == "parse_error"),
        "candidates": repair.get("candidates_tried", 0), "repair": repair,
        "stop_reason": report.get("stop_reason", "error"), "exit_code": report.get("exit_code"),
        "adapter": (report.get("adapter") or {}).get("used"), "final_message": report.get("final_message", ""),
        "error": error or report.get("error"), "diff": diff,
    }


# -- the run ----------------------------------------------------------------------------------

def bootstrap_ci(values: list[float], *, iterations: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean over resamples of the tasks."""
    if not values:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(iterations))
    return means[int(0.025 * (iterations - 1))], means[int(0.975 * (iterations - 1))]


def summarize(results: list[dict]) -> dict:
    """Resolve rate (with CI), median seconds, turns, tool calls, parse failures, candidates; by kind;
    and by halves of the task order (the --learn comparison)."""
    def block(rows: list[dict]) -> dict:
        resolved = [1.0 if r["resolved"] else 0.0 for r in rows]
        low, high = bootstrap_ci(resolved)
        return {
            "tasks": len(rows), "resolved": int(sum(resolved)),
            "resolve_rate": sum(resolved) / len(rows) if rows else None, "ci95": [low, high],
            "median_seconds": statistics.median(r["seconds"] for r in rows) if rows else None,
            "mean_turns": statistics.fmean(r["turns"] for r in rows) if rows else None,
            "mean_tool_calls": statistics.fmean(r["tool_calls"] for r in rows) if rows else None,
            "parse_failures": sum(r["parse_failures"] for r in rows),
            "mean_candidates": statistics.fmean(r["candidates"] for r in rows) if rows else None,
            "train_seconds": round(sum(r["train"]["seconds"] for r in rows if r.get("train")), 1),
        }

    half = len(results) // 2
    kinds = sorted({r["kind"] for r in results})
    return {"all": block(results), "first_half": block(results[:half]), "second_half": block(results[half:]),
            "by_kind": {k: block([r for r in results if r["kind"] == k]) for k in kinds}}


def train_between(trainer, limit: int | None, solved_only: bool = False) -> dict:
    """--learn, after a task: train on the examples it left, before the next task starts.

    On two cores a trainer beside the agent slowed both (3.7 min per task, docs/agent.md), so the bench
    trains between tasks: a task's seconds are the agent's alone and every later task is answered by the
    versions the earlier ones published (and the gate promoted). At most ``limit`` examples per task are
    trained, those with a passing sibling's solution first (SDPO's strongest teacher); the rest are
    marked skipped, with the reason. ``solved_only`` skips every example without such a solution (its
    teacher has only the failing check output, which a small model reads no better than the student).
    """
    store = trainer.store
    ranked = sorted(store.pending_examples(), key=lambda row: (not row.get("s"), row["id"]))
    unsolved = [row["id"] for row in ranked if not row.get("s")] if solved_only else []
    if unsolved:
        store.mark_examples(unsolved, "skipped", error="bench agent --learn-solved-only: no passing sibling")
        ranked = [row for row in ranked if row.get("s")]
    kept = ranked if limit is None else ranked[:limit]
    dropped = [row["id"] for row in ranked[len(kept):]]
    if dropped:
        store.mark_examples(dropped, "skipped", error=f"bench agent --learn-examples {limit}: not trained")
    started = time.perf_counter()
    results = trainer.train_pending()
    return {"examples": len(kept), "with_solution": sum(bool(row.get("s")) for row in kept),
            "skipped": len(dropped) + len(unsolved),
            "seconds": round(time.perf_counter() - started, 2),
            "versions": {r["version"]: r.get("decision") for r in results if r.get("version")},
            "errors": [r["error"] for r in results if r.get("error")]}


def run_bench(tasks: list[AgentTask], context: BenchContext, *, seed: int = 0, max_turns: int | None = None,
              done: dict[str, dict] | None = None, checkpoint: Callable[[dict], None] | None = None,
              log: Callable[[str], None] | None = None, settings_record: dict | None = None) -> dict:
    """Every task in order; the report is rebuilt and checkpointed after each one."""
    started = time.perf_counter()
    results: list[dict] = []

    def report() -> dict:
        return {"settings": settings_record or {}, "tasks": results, "summary": summarize(results),
                "seconds": round(time.perf_counter() - started, 1)}

    for number, task in enumerate(tasks, 1):
        if done and task.id in done:
            results.append(done[task.id])
            continue
        result = run_task(task, context, seed=seed, max_turns=max_turns)
        if context.trainer is not None:
            result["train"] = train_between(context.trainer, context.learn_examples, context.solved_only)
        results.append(result)
        if log:
            mark = "RESOLVED" if result["resolved"] else ("tests changed" if result["tests_changed"] else "failed")
            trained = result.get("train")
            log(f"[{number}/{len(tasks)}] {task.id:48} {mark:14} {result['seconds']:6.1f} s  "
                f"turns {result['turns']}  candidates {result['candidates']}"
                + (f"  trained {trained['examples']} in {trained['seconds']:.0f} s {trained['versions']}"
                   if trained else ""))
        if checkpoint:
            checkpoint(report())
    return report()


def shared_state(directory: Path) -> Path:
    """A `.continualcode/` directory every task links to (--learn)."""
    state = directory / "state"
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    return state


def learn_state_dir(report: Path) -> Path:
    """Where a --learn run with --out keeps its store and adapters: beside the report, so that --resume
    answers the remaining tasks with the versions the finished ones trained (a fresh store would
    silently restart learning from the base model)."""
    return report.with_name(report.name + ".state")
