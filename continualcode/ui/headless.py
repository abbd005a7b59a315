"""Headless runs: `continualcode -p TASK` in scripts, CI and git hooks.

The same agent, store and trainer as the REPL; only the approver and the event
sink differ. Nobody is there to answer an approval prompt, so a policy answers
instead: tools named with `--allow` (or every tool with `--yes`) run, any other
call that needs approval is refused with a reason the model sees and the
report shows. Nothing is silently dropped and nothing is silently run.

Exit codes (what a script branches on):
  0  the agent answered and the checks pass: its last run_tests passed, or it
     ran no tests,
  1  the task failed: tests still failing, turn limit, a refused call, an
     empty answer, an engine error,
  2  usage or setup error (no task, unknown tool, engine cannot start, the
     store is damaged, newer than this continualcode, or locked).

`--json` prints one JSON object (see `build_report`) and nothing else on
stdout; progress lines go to stderr.

A policy refusal is stored as a denial feedback event but queues no training
example: it judges the run's configuration, not the reply (training on it
would teach the model never to edit files).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, TextIO

from continualcode.agent.feedback import FeedbackRecorder
from continualcode.agent.loop import AgentEvents, Decision, RequestResult
from continualcode.agent.tool_calls import ToolCall
from continualcode.config import Settings, UsageError
from continualcode.engines.base import Engine, EngineError
from continualcode.store.rows import StoreError
from continualcode.tools import TOOLS
from continualcode.ui.console import visible

HEADLESS_REFUSAL = "not allowed in headless mode: pass --allow TOOL or --yes"
"""The reason a policy refusal gives (the model reads it; so does the report's reader)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class PolicyApprover:
    """Answers approval prompts from a fixed policy instead of a person."""

    def __init__(self, allowed: Iterable[str] = (), *, yes: bool = False):
        self.allowed = set(allowed)
        self.yes = yes
        self.refused: list[str] = []

    def approve(self, call: ToolCall, preview: str) -> Decision:
        if self.yes or call.name in self.allowed:
            return Decision("yes")
        self.refused.append(call.name)
        return Decision("no", reason=HEADLESS_REFUSAL)


class ReportingRecorder(FeedbackRecorder):
    """Records feedback as usual, keeps a list for the report, and queues no example
    for a headless policy refusal (it is not a judgement of the reply)."""

    def __init__(self, store, **options):
        super().__init__(store, **options)
        self.recorded: list[dict] = []

    @classmethod
    def replacing(cls, recorder: FeedbackRecorder) -> ReportingRecorder:
        """The same recorder, reporting: every setting it was made with carries over (each constructor
        argument is kept under its own name, so a setting added later carries over too)."""
        names = [n for n in inspect.signature(FeedbackRecorder.__init__).parameters if n not in ("self", "store")]
        return cls(recorder.store, **{name: getattr(recorder, name) for name in names})

    def record(self, kind: str, text: str, message_id: int, *, tool_call_id: int | None = None,
               solution: str | None = None, x: list[dict] | None = None) -> int | None:
        if kind == "denial" and HEADLESS_REFUSAL in text:
            self.store.add_feedback(kind, text, message_id, tool_call_id=tool_call_id)
            example = None
        else:
            example = super().record(kind, text, message_id, tool_call_id=tool_call_id, solution=solution, x=x)
        self.recorded.append({"kind": kind, "message_id": message_id, "text": text, "example_id": example})
        return example

    def mark_success(self, message_id: int, earlier_failures: list[int], solution: str,
                     text: str = "checks passed") -> None:
        super().mark_success(message_id, earlier_failures, solution, text)
        self.recorded.append({"kind": "test_pass", "message_id": message_id, "text": text, "example_id": None})


class HeadlessEvents(AgentEvents):
    """Collects every tool call for the report and prints one progress line per call."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self.calls: list[dict] = []
        self.notices: list[str] = []

    def on_tool_result(self, call: ToolCall, result, decision: str) -> None:
        entry = {"name": call.name, "args": dict(call.args), "decision": decision, "ok": result.ok,
                 "exit_code": result.exit_code, "output": result.output}
        if decision == "denied" and HEADLESS_REFUSAL in result.output:
            entry["reason"] = HEADLESS_REFUSAL
        self.calls.append(entry)
        target = call.args.get("path") or call.args.get("command") or ""
        status = "ok" if result.ok else ("refused" if decision in ("denied", "refused") else "failed")
        self._say(f"· {call.name} {target[:60]} [{decision}, {status}]")

    def on_notice(self, text: str) -> None:
        self.notices.append(text)
        self._say(f"· {text}")

    def _say(self, line: str) -> None:
        if self.stream is not None:
            print(visible(line), file=self.stream, flush=True)


@dataclass
class HeadlessRun:
    """What one headless run produced: the exit code and the JSON report."""

    exit_code: int
    report: dict = field(default_factory=dict)

    @property
    def final_text(self) -> str:
        return self.report.get("final_message", "")


def exit_code_for(result: RequestResult) -> int:
    """0 when the agent answered and the checks pass (tests passed, or none were run)."""
    if result.stop_reason != "answered" or not result.final_text.strip():
        return EXIT_FAILED
    return EXIT_FAILED if result.tests_passed is False else EXIT_OK


def check_allowed_tools(names: Iterable[str]) -> list[str]:
    """Validate `--allow` names against the tool set; UsageError names the valid ones."""
    names = list(names)
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        raise UsageError(f"--allow {unknown[0]}: no such tool; tools: {', '.join(TOOLS)}")
    return names


def run_headless(repo: Path, settings: Settings, task: str, *, allowed: Iterable[str] = (),
                 yes: bool = False, wait_train: float | None = None, resume: str | None = None,
                 engine: Engine | None = None, start_trainer: bool = True, trainer=None,
                 check: str | None = None, progress: TextIO | None = None) -> HeadlessRun:
    """Run one task to completion with no prompts; the caller prints or inspects the report.

    `wait_train`: seconds to wait for queued training steps before closing
    (None = do not wait). `check`: the command the repair flow makes pass (`--check`;
    default the test command). `engine` and `trainer` may be shared by several runs
    (the agent benchmark). Raises UsageError for setup problems (exit code 2).
    A store error (damaged, newer, locked) ends the run with exit code 2 and a
    report whose `error` says what to do, so `--json` still prints one object.
    """
    from continualcode.session import open_session

    if not task.strip():
        raise UsageError("the task is empty; pass it as -p \"TASK\" or pipe it with -p -")
    approver = PolicyApprover(check_allowed_tools(allowed), yes=yes)
    events = HeadlessEvents(progress)
    started = time.monotonic()
    adapter = {"used": None, "produced": [], "live": None}
    train = {"learning": False, "waited": False, "idle": None, "pending": None, "last_error": None}
    try:
        session = open_session(repo, settings, approver, events, resume=resume, engine=engine,
                               start_trainer=start_trainer, trainer=trainer, check=check)
    except EngineError as exc:
        raise UsageError(f"the engine could not start: {exc}") from exc
    except StoreError as exc:
        return HeadlessRun(EXIT_USAGE, build_report(
            task, None, events, None, adapter=adapter, train=train, session_id=None, exit_code=EXIT_USAGE,
            error=f"store error: {exc}", seconds=time.monotonic() - started))
    recorder = ReportingRecorder.replacing(session.agent.recorder)
    session.agent.recorder = recorder
    adapter["used"] = session.engine.adapter_version
    train["learning"] = session.trainer is not None
    result, error, failure = None, None, None
    try:
        before = {v.version for v in session.registry.list()}
        try:
            result = session.agent.ask(task)
        except EngineError as exc:
            error = f"engine error: {exc}"
        train = _wait_for_training(session, wait_train)
        after = [v.version for v in session.registry.list()]
        live = session.registry.live()
        adapter.update(produced=[v for v in after if v not in before], live=live.version if live else None)
    except StoreError as exc:  # mid-run: the tool calls so far are still reported
        failure = exc
    finally:
        try:
            session.close()
        except StoreError as exc:
            failure = failure or exc
    exit_code = EXIT_FAILED if result is None else exit_code_for(result)
    if failure is not None:
        error, exit_code = f"store error: {failure}", EXIT_USAGE
    report = build_report(task, result, events, recorder, adapter=adapter, train=train,
                          session_id=session.session_id, exit_code=exit_code, error=error,
                          seconds=time.monotonic() - started)
    return HeadlessRun(exit_code, report)


def _wait_for_training(session, wait_train: float | None) -> dict:
    trainer = session.trainer
    state = {"learning": trainer is not None, "waited": False, "idle": None,
             "pending": session.store.queue_length(), "last_error": None}
    if trainer is not None and wait_train is not None:
        from continualcode.learning.trainer import wait_until_idle

        state["waited"] = True
        state["idle"] = wait_until_idle(trainer, wait_train)
        state["pending"] = session.store.queue_length()
        state["last_error"] = trainer.last_error
    return state


def build_report(task: str, result: RequestResult | None, events: HeadlessEvents,
                 recorder: ReportingRecorder | None, *, adapter: dict, train: dict, session_id: int | None,
                 exit_code: int, error: str | None, seconds: float) -> dict:
    """The one JSON object `--json` prints. Keys are stable; see docs/headless.md.
    (`recorder` and `session_id` are None when the store could not be opened.)"""
    recorded = recorder.recorded if recorder is not None else []
    examples = [f["example_id"] for f in recorded if f["example_id"] is not None]
    return {
        "task": task,
        "exit_code": exit_code,
        "status": "passed" if exit_code == EXIT_OK else "failed",
        "stop_reason": result.stop_reason if result else "error",
        "final_message": result.final_text if result else "",
        "tests_passed": result.tests_passed if result else None,
        "turns": result.turns if result else 0,
        "repair": result.repair.summary() if result is not None and result.repair is not None else None,
        "tool_calls": events.calls,
        "refused_tools": [c["name"] for c in events.calls if c.get("reason") == HEADLESS_REFUSAL],
        "feedback": recorded,
        "examples_queued": examples,
        "adapter": adapter,
        "train": train,
        "notices": events.notices,
        "session_id": session_id,
        "seconds": round(seconds, 3),
        "error": error,
    }


# -- command line ------------------------------------------------------------

def read_task(value: str, stdin: TextIO | None = None) -> str:
    """`-p TASK` as given; `-p -` reads the whole of stdin."""
    if value != "-":
        return value
    stdin = stdin or sys.stdin
    if stdin.isatty():
        raise UsageError("-p - reads the task from stdin, but stdin is a terminal; pipe the task in")
    return stdin.read()


def cmd_print(args, settings: Settings, repo: Path) -> int:
    """The `-p/--print` entry point from cli.main."""
    if args.print is None:
        raise UsageError("--json, --max-turns, --allow, --yes, --check and --wait-train go with -p TASK (headless mode)")
    if args.command:
        raise UsageError(f"-p runs a task; it cannot be combined with the {args.command!r} command")
    if args.max_turns is not None:
        if args.max_turns < 1:
            raise UsageError("--max-turns must be at least 1")
        settings = dataclasses.replace(settings, max_turns=args.max_turns)
    task = read_task(args.print)
    run = run_headless(repo, settings, task, allowed=args.allow or (), yes=args.yes, check=args.check,
                       wait_train=args.wait_train, resume=args.resume, progress=sys.stderr)
    if args.json:
        print(json.dumps(run.report, indent=2, default=str))
    else:
        print(run.final_text)
        if run.report["refused_tools"]:
            print(f"continualcode: refused {', '.join(run.report['refused_tools'])}: {HEADLESS_REFUSAL}",
                  file=sys.stderr)
        if run.report["error"]:
            print(f"continualcode: {run.report['error']}", file=sys.stderr)
        print(f"continualcode: {run.report['status']} ({run.report['stop_reason']}, "
              f"tests {_tests_word(run.report['tests_passed'])})", file=sys.stderr)
    return run.exit_code


def _tests_word(passed: bool | None) -> str:
    return {True: "passed", False: "failed", None: "not run"}[passed]
