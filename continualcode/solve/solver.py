"""`continualcode solve "TASK" --check "COMMAND"`: attempt one task until its check passes.

Test-time discovery (arXiv 2601.20802, §5) for a user's own task. Each
attempt is a full agent run in a scratch copy of the working tree
(`continualcode.tools.scratch`); then the check command runs in that copy and its
output is the attempt's feedback. Methods (same attempt budget):

- ``sdpo`` (default): a fresh conversation and a reset copy each attempt;
  between attempts, SDPO steps on the failed attempt's turns with the check
  output as feedback (reprompt template: these are failures) train a
  task-local adapter branched from the live one (`TaskAdapter`), which serves
  the next attempt.
- ``best-of-k``: fresh conversation and reset copy each attempt, no learning.
- ``multi-turn``: one conversation and one copy; the check output goes back
  as the next user message.

The first passing attempt stops the loop; its diff is shown and applied to the
user's tree only when the user confirms (or passes --apply). Then the user
chooses whether the task-local adapter is merged into the main line (a new
registry version whose parent is the live one, metrics naming the task) or
discarded. Until then nothing is written to the user's tree, store or adapter
registry: a killed run leaves all three as they were.

Approvals: attempts run in the scratch copy, so every tool call is approved
automatically there (`AutoApprover`). Tools resolve paths against the copy's
root, and bash, run_tests and the check run with the copy as their working
directory; a command that names an absolute path outside it can still reach
it, as with `--yes` in headless mode.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from continualcode.agent.feedback import FeedbackRecorder
from continualcode.agent.loop import Agent, AgentEvents, Decision
from continualcode.agent.repair import RepairConfig, Repairer
from continualcode.agent.repair_candidates import candidate_feedback
from continualcode.agent.system_prompt import system_prompt
from continualcode.agent.tool_calls import ToolCall
from continualcode.engines.base import SamplingParams
from continualcode.learning.task_adapter import TaskAdapter, Turn
from continualcode.process import run_command
from continualcode.store.db import Store
from continualcode.tools import ToolConfig, default_tools
from continualcode.tools.scratch import ScratchTree
from continualcode.tools.shell import filtered_env
from continualcode.tools.workspace import Workspace

METHODS = ("sdpo", "best-of-k", "multi-turn")
OUTPUT_CHARS = 2000
"""Characters of check output kept (the tail: where failures and summaries are)."""
MAX_EXAMPLES = 4
"""Turns of a failed attempt trained on: the file-changing ones and the last, most recent first.
Each costs a teacher and a student forward over the whole conversation on CPU."""

FIRST = "{task}\n\nWhen you are done, this check must pass: `{check}` (run_tests runs it)."
RETRY = "The check `{check}` failed:\n\n{output}\n\nFix the code so that the check passes."
FEEDBACK = "The check `{check}` failed after this attempt (exit code {exit_code}):\n\n{output}"


class AutoApprover:
    """Says yes to every call: attempts run in a scratch copy, never in the user's tree."""

    def approve(self, call: ToolCall, preview: str) -> Decision:
        return Decision("yes")


class SolveEvents:
    """Progress of a solve; the default shows nothing (`solve_view.RichProgress` draws it)."""

    def on_attempt_start(self, number: int, budget: int) -> None: ...
    def on_text(self, piece: str) -> None: ...
    def on_tool(self, call: ToolCall, ok: bool, output: str) -> None: ...
    def on_check(self, attempt: AttemptReport) -> None: ...
    def on_learn_start(self, number: int, turns: int) -> None: ...
    def on_learn(self, number: int, metrics: dict) -> None: ...


@dataclass
class AttemptReport:
    number: int
    passed: bool
    exit_code: int | None
    check_output: str
    seconds: float
    stop_reason: str
    tool_calls: list[dict] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    learn: dict | None = None


@dataclass
class SolveOutcome:
    task: str
    check: str
    method: str
    budget: int
    attempts: list[AttemptReport] = field(default_factory=list)
    diff: str = ""

    @property
    def solved(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].passed

    def to_json(self) -> dict:
        return {"task": self.task, "check": self.check, "method": self.method, "budget": self.budget,
                "solved": self.solved, "attempts": [asdict(a) for a in self.attempts], "diff": self.diff}

    @classmethod
    def from_json(cls, report: dict) -> SolveOutcome:
        """The outcome part of a solve report (`run_solve`'s first value)."""
        attempts = [AttemptReport(**a) for a in report["attempts"]]
        return cls(report["task"], report["check"], report["method"], report["budget"], attempts, report["diff"])


class _AttemptEvents(AgentEvents):
    """Keeps each sampled turn (for SDPO) and which of them changed files; forwards progress."""

    def __init__(self, progress: SolveEvents, check: str = ""):
        self.progress = progress
        self.check = check
        self.agent: Agent | None = None
        self.turns: list[tuple[Turn, bool]] = []
        self.candidates: list[tuple[Turn, str]] = []   # failed repair candidates and their own feedback
        self.calls: list[dict] = []

    def on_text(self, piece: str) -> None:
        self.progress.on_text(piece)

    def on_reply(self, completion, message_id: int) -> None:
        x = [dict(m) for m in self.agent.messages[:-1]]
        self.turns.append((Turn(x, completion.text, list(completion.token_ids), list(completion.logprobs)), False))

    def on_tool_result(self, call: ToolCall, result, decision: str) -> None:
        self.calls.append({"name": call.name, "args": dict(call.args), "ok": result.ok})
        if call.name in ("write_file", "edit") and result.ok and self.turns:
            self.turns[-1] = (self.turns[-1][0], True)
        self.progress.on_tool(call, result.ok, result.output)

    def on_candidate(self, candidate) -> None:
        """A repair candidate (the shared generator): a failed one is a turn the next steps learn from,
        judged by its own check output."""
        if candidate.passed or candidate.duplicate_of is not None:
            return
        completion = candidate.completion
        turn = Turn(completion.extra.get("messages") or [dict(m) for m in self.agent.messages], completion.text,
                    list(completion.token_ids), list(completion.logprobs))
        self.candidates.append((turn, candidate_feedback(self.check, candidate)[1]))

    def learning_turns(self, limit: int = MAX_EXAMPLES) -> list[Turn]:
        """The turns a failed check judges: the latest that changed files, then the last turn if room."""
        if not self.turns:
            return []
        chosen = [turn for turn, changed in self.turns if changed][-limit:]
        last = self.turns[-1][0]
        if last not in chosen and (len(chosen) < limit or not chosen):
            chosen.append(last)
        return chosen


class Solver:
    """One solve: the scratch copy, a task-local store, the attempts, and the task adapter's steps."""

    def __init__(self, repo: Path, engine, settings, *, task: str, check: str, method: str = "sdpo",
                 budget: int = 4, adapter: TaskAdapter | None = None, events: SolveEvents | None = None,
                 check_timeout: float = 600.0, max_examples: int = MAX_EXAMPLES):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        if budget < 1:
            raise ValueError("the budget must be at least one attempt")
        self.repo, self.engine, self.settings = Path(repo).resolve(), engine, settings
        self.task, self.check, self.method, self.budget = task, check, method, budget
        self.adapter = adapter if method == "sdpo" else None
        self.events = events or SolveEvents()
        self.check_timeout, self.max_examples = check_timeout, max_examples
        self.scratch = ScratchTree.create(self.repo)
        self.store = Store(self.scratch.state / "store.db")
        self.tool_config = ToolConfig(bash_timeout=settings.bash_timeout, test_command=check,
                                      test_timeout=check_timeout, env_allow=tuple(settings.env_allow))
        self.tools = default_tools(self.tool_config)

    def run(self) -> SolveOutcome:
        """Attempt until the check passes or the budget is spent; the scratch copy keeps the last attempt."""
        outcome = SolveOutcome(self.task, self.check, self.method, self.budget)
        agent = events = None
        for number in range(1, self.budget + 1):
            self.events.on_attempt_start(number, self.budget)
            started = time.monotonic()
            if self.method == "multi-turn" and agent is not None:
                events.calls = []
                result = agent.ask(RETRY.format(check=self.check, output=outcome.attempts[-1].check_output))
            else:
                if number > 1:
                    self.scratch.reset()
                if self.adapter is not None:
                    self.adapter.serve()
                agent, events = self._new_agent()
                result = agent.ask(FIRST.format(task=self.task, check=self.check))
            passed, exit_code, output = self.run_check()
            report = AttemptReport(number, passed, exit_code, output, round(time.monotonic() - started, 3),
                                   result.stop_reason, list(events.calls), self.scratch.changed_files())
            outcome.attempts.append(report)
            self.events.on_check(report)
            if passed:
                outcome.diff = self.scratch.diff()
                break
            if self.adapter is not None and number < self.budget:
                feedback = FEEDBACK.format(check=self.check, exit_code=exit_code, output=output)
                if events.candidates:  # the candidate generator ran: each candidate with its own check output
                    judged = events.candidates[-self.max_examples:]
                    turns, feedbacks = [t for t, _ in judged], [f for _, f in judged]
                else:
                    turns = events.learning_turns(self.max_examples)
                    feedbacks = [feedback] * len(turns)
                self.events.on_learn_start(number, len(turns))
                report.learn = self.adapter.learn(turns, feedbacks) if turns else {"skipped": "no turns"}
                self.events.on_learn(number, report.learn)
        return outcome

    def run_check(self) -> tuple[bool, int | None, str]:
        """The check command in the scratch copy: (passed, exit code, the tail of its output)."""
        result = run_command(self.check, self.scratch.root, env=filtered_env(self.tool_config),
                             timeout=self.check_timeout, output_limit=self.tool_config.output_limit)
        # the same feedback text whatever the temporary directory is called
        output = result.report().replace(f"{self.scratch.root}/", "")
        return result.ok, result.exit_code, output[-OUTPUT_CHARS:]

    def _new_agent(self) -> tuple[Agent, _AttemptEvents]:
        from continualcode.agent.system_prompt import repo_summary

        events = _AttemptEvents(self.events, self.check)
        session = self.store.start_session(repo_root=str(self.scratch.root), model=self.settings.model,
                                           engine=self.settings.engine)
        agent = Agent(
            self.engine, self.store, session, Workspace(self.scratch.root), self.tools, AutoApprover(),
            FeedbackRecorder(self.store, learn=False),
            system_prompt=system_prompt(self.tools, repo_summary(self.repo)), events=events,  # the user's name
            sampling=SamplingParams(max_new_tokens=self.settings.max_new_tokens,
                                    temperature=self.settings.temperature),
            max_turns=self.settings.max_turns,
            # the same candidate generator as the agent's repair flow; each attempt is one round
            repairer=Repairer(RepairConfig(candidates=self.settings.repair_candidates, rounds=1,
                                           rewrites=self.settings.repair_rewrites,
                                           edit_format=self.settings.edit_format,
                                           prefix=self.settings.repair_prefix,
                                           check_timeout=self.check_timeout), check=self.check)
            if getattr(self.settings, "repair", True) else None,
        )
        events.agent = agent
        return agent, events

    def close(self) -> None:
        self.store.close()
        self.scratch.close()


def finish(outcome: SolveOutcome, repo: Path, adapter: TaskAdapter | None, *,
           confirm_apply: Callable[[str], bool], confirm_merge: Callable[[TaskAdapter], bool],
           user_store: Callable[[], Store] | None = None) -> dict:
    """The user's two choices after the attempts: apply the diff? merge the learning?

    Returns the report's ``applied`` / ``patch_file`` / ``adapter`` entries.
    """
    from continualcode.adapters.registry import AdapterRegistry
    from continualcode.tools.scratch import PatchConflict, apply_patch

    report: dict = {"applied": False, "applied_files": [], "patch_file": None, "apply_error": None}
    if outcome.solved and outcome.diff:
        if confirm_apply(outcome.diff):
            try:
                report["applied_files"] = apply_patch(repo, outcome.diff)
                report["applied"] = True
            except PatchConflict as exc:
                report["apply_error"] = str(exc)
        if not report["applied"]:
            report["patch_file"] = str(save_patch(repo, outcome.diff))
    state = {"branched_from": adapter.parent if adapter else None, "steps": adapter.steps_done if adapter else 0,
             "decision": "none", "version": None, "live": None}
    if adapter is not None and adapter.learned:
        if confirm_merge(adapter):
            if adapter.registry is None:
                adapter.registry = AdapterRegistry.for_repo(repo)
            note = {"solved": outcome.solved, "attempts": len(outcome.attempts), "check": outcome.check[:200]}
            version, made_live = adapter.merge(outcome.task, note)
            state.update(decision="merged", version=version.version, live=made_live)
            if user_store is not None:
                store = user_store()
                store.add_adapter_event(version.version, "created",
                                        {"source": "solve", "task": outcome.task[:500], "parent": adapter.parent,
                                         "live": made_live})
        else:
            adapter.discard()
            state["decision"] = "discarded"
    report["adapter"] = state
    return report


def save_patch(repo: Path, diff: str) -> Path:
    """Keep an unapplied diff under .continualcode/solve/ (atomic write); `git apply FILE` applies it."""
    from continualcode.atomic import atomic_write
    from continualcode.paths import exclude_from_git

    folder = Path(repo) / ".continualcode" / "solve"
    folder.mkdir(parents=True, exist_ok=True)
    exclude_from_git(Path(repo), ".continualcode/")
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}.patch"
    atomic_write(path, diff.encode())
    return path


# -- command line and /solve ----------------------------------------------------------


def run_solve(repo: Path, settings, args, engine, registry, ui, *, user_store=None) -> tuple[dict, int]:
    """Attempts, then the two questions; returns (the JSON report, exit code).

    Shared by the CLI, the REPL's and the TUI's /solve; ``ui`` (a
    `solve_view.SolveUI`) draws the progress and asks the questions.
    """
    from continualcode.models import resolve
    from continualcode.solve.solver import merge_question

    adapter = None
    if args.method == "sdpo" and settings.learn:
        adapter = TaskAdapter(resolve(settings.model), engine=engine, registry=registry, steps=args.steps,
                              dtype=settings.dtype)
    started = time.monotonic()
    solver = None
    try:
        solver = Solver(repo, engine, settings, task=args.task, check=args.check, method=args.method,
                        budget=args.budget, adapter=adapter, check_timeout=args.check_timeout,
                        events=ui.progress())
        with solver.events:
            outcome = solver.run()

        def confirm_apply(diff: str) -> bool:
            ui.show_diff(diff)
            return args.apply or ui.ask(f"Apply this diff to {repo}?")

        def confirm_merge(task_adapter: TaskAdapter) -> bool:
            return args.merge == "yes" or (args.merge == "ask" and ui.ask(merge_question(task_adapter)))

        finished = finish(outcome, repo, adapter, confirm_apply=confirm_apply, confirm_merge=confirm_merge,
                          user_store=user_store)
    finally:
        if adapter is not None:
            if adapter.version is not None:  # interrupted before the choice: the engine serves the parent again
                adapter.discard()
            adapter.close()
        if solver is not None:
            solver.close()
    report = {**outcome.to_json(), **finished, "seconds": round(time.monotonic() - started, 3)}
    return report, 0 if outcome.solved else 1


def merge_question(adapter: TaskAdapter) -> str:
    return (f"Merge what the task-local adapter learned ({adapter.steps_done} SDPO steps) into the main line "
            f"as a new version after {adapter.parent or 'the base model'}?")


def add_arguments(p) -> None:
    """A solve's arguments, shared by `continualcode solve` and /solve."""
    p.add_argument("task", help="what to do, in words")
    p.add_argument("--check", required=True, metavar="COMMAND",
                   help="shell command that exits 0 when the task is done (run in the scratch copy)")
    p.add_argument("--budget", type=int, default=4, help="attempts at most (default 4)")
    p.add_argument("--method", choices=METHODS, default="sdpo",
                   help="sdpo: learn between attempts (default); best-of-k: independent attempts; "
                   "multi-turn: one conversation that sees each check output")
    p.add_argument("--apply", action="store_true", help="apply the passing diff without asking")
    p.add_argument("--merge", choices=["ask", "yes", "no"], default="ask",
                   help="merge the task-local adapter into the main line (ask: on a terminal, else no)")
    p.add_argument("--steps", type=int, default=None, help="SDPO steps after each failed attempt (default: preset)")
    p.add_argument("--check-timeout", type=float, default=600.0, help="seconds before the check is killed")
