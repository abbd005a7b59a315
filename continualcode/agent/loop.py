"""The agent loop: model reply → at most one tool call → result → next reply.

The loop is the same for the REPL, the TUI and headless runs; they differ only
in the `Approver` (who says yes to write/edit/bash) and the `AgentEvents` sink
(where streamed text and tool results are shown). Every step is stored, and
every piece of feedback the loop sees (a denial, edited arguments, a tool
error, a failing or passing test run, an unparsable call) goes through the
`FeedbackRecorder`, which queues training examples.

A request about failing tests or errors first goes to the repair flow
(continualcode.agent.repair) when the agent has one: run the check, try
candidate fixes in a scratch copy, keep the first that passes. When it does
not apply (no check, the check already passes) the tool loop takes over.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from continualcode.agent.feedback import FeedbackRecorder
from continualcode.agent.file_history import FileHistory
from continualcode.agent.tool_calls import (
    STOP_STRINGS,
    ToolCall,
    parse_tool_call,
    render_call_error,
    render_tool_call,
    render_tool_result,
)
from continualcode.engines.base import Completion, Engine, Message, SamplingParams
from continualcode.store.db import Store
from continualcode.tools import Tool, ToolResult
from continualcode.tools.workspace import Workspace


@dataclass
class Decision:
    """The user's answer to an approval prompt."""

    kind: str                          # "yes" | "always" | "no" | "edit"
    reason: str | None = None          # why not (kind "no")
    args: dict[str, str] | None = None  # the edited arguments (kind "edit")


class Approver(Protocol):
    def approve(self, call: ToolCall, preview: str) -> Decision: ...


class AgentEvents:
    """Where the agent reports progress; the default shows nothing (subclass it)."""

    def on_text(self, piece: str) -> None: ...
    def on_reply(self, completion: Completion, message_id: int) -> None: ...
    def on_tool_call(self, call: ToolCall) -> None: ...
    def on_tool_result(self, call: ToolCall, result: ToolResult, decision: str) -> None: ...
    def on_notice(self, text: str) -> None: ...
    def on_candidate(self, candidate) -> None:
        """A repair candidate was sampled and checked (continualcode.agent.repair.Candidate)."""


@dataclass
class TurnRecord:
    """One tool call of a request, as headless --json reports it."""

    name: str
    args: dict[str, str]
    decision: str
    ok: bool | None
    output: str
    exit_code: int | None = None


@dataclass
class RequestResult:
    final_text: str
    stop_reason: str                    # "answered" | "denied" | "max_turns" | "cancelled" | "refused"
    calls: list[TurnRecord] = field(default_factory=list)
    feedback: list[dict] = field(default_factory=list)   # {kind, message_id, text}
    examples: list[int] = field(default_factory=list)
    tests_passed: bool | None = None
    adapter_version: str | None = None
    turns: int = 0                      # model replies generated for this request
    repair: object | None = None        # the repair flow's RepairOutcome, when it ran


class Agent:
    def __init__(
        self,
        engine: Engine,
        store: Store,
        session_id: int,
        workspace: Workspace,
        tools: dict[str, Tool],
        approver: Approver,
        recorder: FeedbackRecorder,
        *,
        system_prompt: str,
        events: AgentEvents | None = None,
        sampling: SamplingParams | None = None,
        max_turns: int = 20,
        history: FileHistory | None = None,
        auto_commit: bool = False,
        repairer=None,
    ):
        self.engine, self.store, self.session_id = engine, store, session_id
        self.workspace, self.tools, self.approver, self.recorder = workspace, tools, approver, recorder
        self.events = events or AgentEvents()
        self.sampling = sampling or SamplingParams()
        self.max_turns = max_turns
        self.history = history or FileHistory(workspace.root)
        self.auto_commit = auto_commit      # settings.auto_commit: commit each file the agent writes
        self.repairer = repairer            # continualcode.agent.repair.Repairer, or None
        self.always: set[str] = set()
        self._previous_call: tuple[str, dict] | None = None
        self.messages: list[Message] = []
        self.message_ids: list[int] = []
        self.last_reply_id: int | None = None
        self.system_prompt = system_prompt
        self._load_or_start()

    # -- conversation ------------------------------------------------------
    def switch_session(self, session_id: int) -> None:
        """Continue in another stored session (/clear starts a new one, /resume an old one)."""
        self.session_id = session_id
        self.messages, self.message_ids, self.last_reply_id = [], [], None
        self.always.clear()
        self._load_or_start()

    def _load_or_start(self) -> None:
        stored = self.store.session_messages(self.session_id)
        if not stored:
            self._append("system", self.system_prompt)
            return
        for row in stored:
            self.messages.append({"role": row["role"], "content": row["content"]})
            self.message_ids.append(row["id"])
            if row["role"] == "assistant":
                self.last_reply_id = row["id"]

    def append_message(self, role: str, content: str, completion: Completion | None = None) -> int:
        """Add a message to the conversation and the store (assistant turns with their sampled ids)."""
        return self._append(role, content, completion)

    def record_feedback(self, result: RequestResult, kind: str, text: str, message_id: int, **kw) -> None:
        self._feedback(result, kind, text, message_id, **kw)

    def _append(self, role: str, content: str, completion: Completion | None = None) -> int:
        message_id = self.store.add_message(
            self.session_id, role, content,
            token_ids=completion.token_ids if completion else None,
            logprobs=completion.logprobs if completion else None,
            adapter_version=completion.adapter_version if completion else None,
        )
        self.messages.append({"role": role, "content": content})
        self.message_ids.append(message_id)
        return message_id

    def _feedback(self, result: RequestResult, kind: str, text: str, message_id: int, **kw) -> None:
        example = self.recorder.record(kind, text, message_id, **kw)
        result.feedback.append({"kind": kind, "message_id": message_id, "text": text})
        if example is not None:
            result.examples.append(example)

    # -- one request -------------------------------------------------------
    def ask(self, text: str, cancel: threading.Event | None = None) -> RequestResult:
        """Run the loop for one user request until the model answers without a tool call."""
        result = RequestResult(final_text="", stop_reason="answered")
        if self.last_reply_id is not None:
            # The user's next message is conversational feedback on the previous reply;
            # the self-teacher decides whether it is a correction (hindsight template).
            self._feedback(result, "followup", text, self.last_reply_id)
        if not any(m["role"] == "user" for m in self.messages):
            self.store.set_session_title(self.session_id, text.strip().splitlines()[0][:80] if text.strip() else "")
        self._append("user", text)
        if self.repairer is not None and self.repairer.try_repair(self, text, result, cancel):
            result.turns = sum(1 for c in result.repair.candidates)
            return result
        failed_steps: list[int] = []
        self._previous_call = None
        for _ in range(self.max_turns):
            params = SamplingParams(**{**self.sampling.__dict__, "stop": tuple(STOP_STRINGS)})
            completion = self.engine.generate(self.messages, params, on_text=self.events.on_text, cancel=cancel)
            result.turns += 1
            reply_id = self._append("assistant", completion.text, completion)
            self.last_reply_id = reply_id
            result.adapter_version = completion.adapter_version
            self.events.on_reply(completion, reply_id)
            result.final_text = completion.text
            if completion.finish_reason == "cancelled":
                result.stop_reason = "cancelled"
                return result
            parsed = parse_tool_call(completion.text, self.tools)
            if parsed.error:
                self._feedback(result, "parse_error", parsed.error, reply_id)
                failed_steps.append(reply_id)
                self._append("user", render_call_error(parsed.error))
                continue
            if parsed.call is None:
                return result
            stop = self._run_call(parsed.call, completion.text, reply_id, result, failed_steps)
            if stop:
                return result
            if result.stop_reason == "repeated_call":
                result.final_text = ("I stopped: I was about to repeat the same tool call, which cannot tell me "
                                     "anything new. Tell me what to try next.")
                return result
        result.stop_reason = "max_turns"
        return result

    def _run_call(self, call: ToolCall, reply_text: str, reply_id: int,
                  result: RequestResult, failed_steps: list[int]) -> bool:
        """Approve and run one call; True when the request must stop here."""
        self.events.on_tool_call(call)
        tool = self.tools.get(call.name)
        if tool is None:  # parse_tool_call validates names; a custom tool set may not
            message = f"Unknown tool {call.name!r}. Tools: {', '.join(self.tools)}"
            self._feedback(result, "parse_error", message, reply_id)
            self._append("user", message)
            return False
        refused = tool.check(call.args, self.workspace)
        if refused is None and (call.name, call.args) == self._previous_call:
            # Small models loop on one call: running it again cannot tell them anything new, and
            # measured on the bundled Qwen, refusing and asking again only led to the same call
            # until the turn budget ran out. The refusal is recorded and the turn ends here.
            refused = ToolResult(ok=False, error_kind="repeated_call", output=(
                "You just made this exact call; its result is above. "
                "Answer the user now, or make a different call."))
            result.stop_reason = "repeated_call"
        self._previous_call = (call.name, dict(call.args))
        if refused is not None:  # refused before any prompt: bad args, a path outside the repo, a repeat
            call_id = self._store_call(reply_id, call, "refused", None, None, refused)
            self._report(call, refused, "refused", result)
            self._feedback(result, "tool_error", render_tool_result(call.name, refused), reply_id, tool_call_id=call_id)
            failed_steps.append(reply_id)
            self._append("user", render_tool_result(call.name, refused))
            return False
        decision = Decision("auto")
        if tool.needs_approval and call.name not in self.always:
            decision = self.approver.approve(call, tool.preview(call.args, self.workspace))
            if decision.kind == "always":
                self.always.add(call.name)
        if decision.kind == "no":
            reason = decision.reason or "no reason given"
            denied = ToolResult(ok=False, output=f"The user denied this call: {reason}", error_kind="denied")
            call_id = self._store_call(reply_id, call, "denied", reason, None, denied)
            self._report(call, denied, "denied", result)
            self._feedback(result, "denial", f"The user denied the {call.name} call. Reason: {reason}",
                           reply_id, tool_call_id=call_id)
            self._append("user", render_tool_result(call.name, denied))
            result.stop_reason = "denied"
            return True
        edited = None
        if decision.kind == "edit" and decision.args is not None:
            edited = decision.args
            original = call
            call = ToolCall(call.name, edited, render_tool_call(ToolCall(call.name, edited, "")))
            refused = tool.check(call.args, self.workspace)
            if refused is not None:
                self._report(call, refused, "refused", result)
                self._append("user", render_tool_result(call.name, refused))
                return True
            solution = reply_text.replace(original.raw, call.raw) if original.raw else call.raw
        recorded = "edited" if edited else {"yes": "approved"}.get(decision.kind, decision.kind)
        snapshot = self.history.before(call, tool, self.workspace)
        outcome = tool.run(call.args, self.workspace)
        self.history.after(snapshot, outcome, reply_id)
        if self.auto_commit and snapshot is not None and outcome.ok:
            from continualcode.agent.autocommit import commit_agent_change

            version = self._adapter_of(reply_id)
            self.events.on_notice(commit_agent_change(self.workspace.root, call.name, snapshot.path,
                                                      version, self.session_id, reply_id))
        call_id = self._store_call(reply_id, call, recorded, decision.reason, edited, outcome)
        self._report(call, outcome, recorded, result)
        if edited is not None:
            self._feedback(result, "edit", "The user corrected the tool call arguments before running it.",
                           reply_id, tool_call_id=call_id, solution=solution)
        rendered = render_tool_result(call.name, outcome)
        if call.name == "run_tests":
            result.tests_passed = outcome.ok
            if outcome.ok:
                fixer = self._last_changing_step(reply_id)
                if fixer is not None:
                    self.recorder.mark_success(fixer, failed_steps, self._content_of(fixer))
            else:  # the failure judges the step whose edit is under test
                judged = self._last_changing_step(reply_id) or reply_id
                self._feedback(result, "test_failure", rendered, judged, tool_call_id=call_id)
                failed_steps.append(judged)
        elif not outcome.ok:
            self._feedback(result, "tool_error", rendered, reply_id, tool_call_id=call_id)
            failed_steps.append(reply_id)
        self._append("user", rendered)
        return False

    # -- for the repair flow -------------------------------------------------
    def approve_change(self, diff: str) -> Decision:
        """Ask once for a whole change shown as a diff, as a write_file call (policies that allow
        write_file allow it; "always" allows every later write and edit of the session)."""
        if "write_file" in self.always and "edit" in self.always:
            return Decision("auto")
        decision = self.approver.approve(ToolCall("write_file", {"diff": diff}), diff)
        if decision.kind == "always":
            self.always.update({"write_file", "edit"})
        return decision

    def write_file(self, path: str, content: str, reply_id: int, result: RequestResult) -> ToolResult:
        """Write a file with the write_file tool, as an approved call: stored, /undo-able, auto-committed."""
        call = ToolCall("write_file", {"path": path, "content": content})
        tool = self.tools["write_file"]
        snapshot = self.history.before(call, tool, self.workspace)
        outcome = tool.run(call.args, self.workspace)
        self.history.after(snapshot, outcome, reply_id)
        if self.auto_commit and snapshot is not None and outcome.ok:
            from continualcode.agent.autocommit import commit_agent_change

            self.events.on_notice(commit_agent_change(self.workspace.root, call.name, snapshot.path,
                                                      self._adapter_of(reply_id), self.session_id, reply_id))
        self._store_call(reply_id, call, "approved", None, None, outcome)
        self._report(call, outcome, "approved", result)
        return outcome

    # -- helpers -----------------------------------------------------------
    def _store_call(self, reply_id, call, decision, reason, edited, outcome: ToolResult) -> int:
        return self.store.add_tool_call(
            message_id=reply_id, name=call.name, arguments=call.args, decision=decision,
            decision_reason=reason, edited_arguments=edited, result=outcome.output,
            exit_code=outcome.exit_code, ok=outcome.ok, duration=outcome.duration,
        )

    def _report(self, call: ToolCall, outcome: ToolResult, decision: str, result: RequestResult) -> None:
        self.events.on_tool_result(call, outcome, decision)
        result.calls.append(TurnRecord(call.name, dict(call.args), decision, outcome.ok, outcome.output, outcome.exit_code))

    def _last_changing_step(self, before_id: int) -> int | None:
        """The most recent assistant step of this session that changed a file."""
        return self.history.last_change_message(before_id)

    def _adapter_of(self, message_id: int) -> str | None:
        row = self.store.message(message_id)
        return row["adapter_version"] if row else None

    def _content_of(self, message_id: int) -> str:
        row = self.store.message(message_id)
        return row["content"] if row else ""

    # -- /undo -------------------------------------------------------------
    def undo(self, reason: str | None = None) -> str:
        """Revert the agent's last file change through git; record it as feedback."""
        change = self.history.undo()
        text = f"The user undid this change to {change.path}" + (f". Reason: {reason}" if reason else ".")
        self.recorder.record("undo", text, change.message_id)
        return f"reverted {change.path}"
