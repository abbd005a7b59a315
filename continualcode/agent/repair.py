"""Test-driven repair: run the check, show the model the failure and the files, try several
candidate fixes in a scratch copy, keep the first that makes the check pass (docs/agent.md).

A 0.5B model cannot be trusted to explore a repository one tool call at a time,
but it can often write a corrected function when it sees the failing assertion
next to the code. So, for a request about failing tests or errors when a check
command exists:

1. run the check (approved as run_tests); if it passes, the tool loop takes the request;
2. put the request, the trimmed failure, the implicated files
   (continualcode.agent.failures), a hint naming the suspect function and one
   edit form's instructions (continualcode.agent.edit_formats) into a repair
   conversation of its own (no tools, which the bundled model otherwise answers with);
3. per round, sample fixes of the shown code in one batch, then `rewrites`
   candidates that write the suspect function afresh without seeing its body
   (continualcode.agent.function_parts); apply each in a scratch copy
   (continualcode.tools.scratch), refuse any that changes a test file, run
   the check, stop at the first pass; a later round sees the closest failure;
4. a passing fix is shown as one diff (y/n/edit) and applied with the
   write_file tool (so /undo and auto-commit see it); headless runs apply it
   under --yes. No pass: the report says so, shows the closest attempt's check
   output, and nothing in the user's tree changes.

Every candidate is training signal: a failing one is a reprompt example whose
feedback is its check output, and the passing one becomes the solution of its
failed siblings (the successful sibling as a demonstration). Each is stored in
a side session (engine "repair", hidden from /resume) with the conversation it
answered as its x.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from continualcode.agent.edit_formats import FORMATS, CandidateError, check_python
from continualcode.agent.failures import (
    Failure,
    implicated_files,
    is_test_file,
    read_failure,
    suspect_functions,
)
from continualcode.agent.repair_candidates import (
    Candidate,
    candidate_feedback,
    closest,
    detail,
    sample,
    store_candidate,
    unified_diff,
    verdict,
)
from continualcode.agent.repair_prompt import (
    PREFIXES,
    candidate_prefix,
    repair_conversation,
    retry_message,
    rewrite_conversation,
    suspect_parts,
)
from continualcode.agent.tool_calls import ToolCall
from continualcode.engines.base import SamplingParams
from continualcode.tools.scratch import PatchConflict, ScratchTree, apply_patch
from continualcode.tools.shell import run_in_repo
from continualcode.tools.workspace import Workspace

Agent = Any
"""continualcode.agent.loop.Agent (not imported: the loop imports this module's caller side)."""
RequestResult = Any

REPAIR_WORDS = re.compile(
    r"\b(tests?|failing|fails?|failed|failure|errors?|exceptions?|traceback|crash\w*|bugs?|broken|fix\w*|"
    r"pytest|raises?)\b", re.IGNORECASE)


def wants_repair(request: str) -> bool:
    """Is the request about failing tests or errors (so running the check first is the right start)?"""
    return bool(REPAIR_WORDS.search(request))


@dataclass
class RepairConfig:
    """How hard the repair flow tries; defaults chosen on the public agent benchmark (docs/agent.md)."""

    candidates: int = 8
    """Candidates per round: fixes of the shown code in one batch, then the rewrites in another."""
    rewrites: int = 4
    """How many of a round's candidates write the suspect function afresh from its head (signature,
    docstring) and the failing tests, its body hidden (function form, one suspect; at most half the round)."""
    rounds: int = 2
    """Rounds of candidates; a later round sees the closest failure so far."""
    edit_format: str = "function"
    """How candidates are written: function, whole, search_replace or lines (continualcode.agent.edit_formats)."""
    temperature: float = 0.8
    prefix: str = "name"
    """How a `function` candidate starts: "name" (``def <the suspect>(`` when the failure points at one
    function, else ``def ``), "bug" (a ``# The bug:`` comment first), "def", or "none"."""
    base_rounds: int = 0
    """While an adapter is served, the first N rounds sample from the base weights: a learned adapter
    adds candidates in the later rounds and cannot take the base's first ones away (docs/agent.md)."""
    check_timeout: float = 120.0
    time_budget: float = 600.0
    """Seconds after which no new round starts."""
    max_files: int = 4


@dataclass
class RepairOutcome:
    status: str                        # fixed | unfixed | no_failure | declined | no_check
    check: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    winner: Candidate | None = None
    rounds: int = 0
    seconds: float = 0.0
    initial_failure: Failure | None = None
    applied: bool = False
    request: str = ""

    def summary(self) -> dict:
        best = self.winner or closest(self.candidates)
        return {"status": self.status, "check": self.check, "rounds": self.rounds,
                "candidates_tried": sum(1 for c in self.candidates if c.duplicate_of is None),
                "candidates_sampled": len(self.candidates),
                "unusable": sum(1 for c in self.candidates if c.error), "applied": self.applied,
                "passed_candidate": None if self.winner is None else f"{self.winner.round}.{self.winner.index}",
                "best_score": None if best is None or best.failure is None else best.failure.score,
                "seconds": round(self.seconds, 2)}


class Repairer:
    """The repair flow for one agent; `Agent.ask` calls `try_repair` for requests it applies to."""

    def __init__(self, config: RepairConfig | None = None, check: str | None = None) -> None:
        self.config = config or RepairConfig()
        self.check_override = check
        self.check = check or ""
        self.candidate_timeout = self.config.check_timeout
        if self.config.edit_format not in FORMATS:
            raise ValueError(f"unknown edit format {self.config.edit_format!r}; choose one of {', '.join(FORMATS)}")
        self.format = FORMATS[self.config.edit_format]
        if self.config.rewrites < 0 or self.config.candidates < 1 or self.config.base_rounds < 0:
            raise ValueError("repair needs at least 1 candidate per round, 0 or more rewrites and 0 or more "
                             "base rounds")
        if self.config.prefix not in PREFIXES:
            raise ValueError(f"unknown repair prefix {self.config.prefix!r}; choose one of {', '.join(PREFIXES)}")

    # -- entry ---------------------------------------------------------------------------------
    def try_repair(self, agent: Agent, request: str, result: RequestResult, cancel=None) -> bool:
        """Run the flow for `request`; False when it does not apply (the tool loop takes over)."""
        started = time.monotonic()
        if "run_tests" not in agent.tools or not (self.check_override or wants_repair(request)):
            return False
        check = self.check_override or agent.tools["run_tests"].command(agent.workspace)
        if not check:
            return False
        outcome = RepairOutcome("no_failure", check=check, request=request)
        self.check = check
        if not self._allowed(agent, check):
            return False
        agent.events.on_notice(f"running the check: {check}")
        first = run_in_repo(check, agent.workspace, agent.tools["run_tests"].config, self.config.check_timeout)
        # A candidate that loops forever must not cost the whole check timeout: a few times what the
        # check took on the unfixed code is plenty (a mutated loop condition is a common candidate).
        self.candidate_timeout = min(self.config.check_timeout, max(10.0, 4 * first.duration + 5))
        if first.ok:
            agent.events.on_notice("the check passes already; nothing to repair")
            return False
        failure = read_failure(first.output, agent.workspace.root)
        outcome.initial_failure = failure
        files = {p: (agent.workspace.root / p).read_text(errors="replace")
                 for p in implicated_files(failure, agent.workspace.root, limit=self.config.max_files, check=check)}
        if not files:
            return False
        suspects = suspect_functions(failure, agent.workspace.root, list(files), check)
        agent.events.on_notice(f"the check fails ({detail(failure)}); looking at {', '.join(files)}")
        conversation = repair_conversation(request, check, failure, files, suspects, self.format)
        with ScratchTree.create(agent.workspace.root) as scratch:
            self._rounds(agent, conversation, scratch, check, files, suspects, outcome, started, cancel)
        outcome.seconds = time.monotonic() - started
        self._finish(agent, request, outcome, result)
        return True

    # -- rounds --------------------------------------------------------------------------------
    def _rounds(self, agent: Agent, conversation: list[dict], scratch: ScratchTree, check: str,
                files: dict[str, str], suspects: list[tuple[str, str]], outcome: RepairOutcome, started: float,
                cancel) -> None:
        seen: dict[str, int] = {}
        parts = suspect_parts(suspects, files)
        rewrite = None
        if self.config.rewrites and self.format.name == "function" and parts is not None and parts.has_body:
            rewrite = rewrite_conversation(outcome.request, check, outcome.initial_failure, files, parts,
                                           self.format)
        fixes = self.config.candidates - (min(self.config.rewrites, self.config.candidates // 2) if rewrite else 0)
        fix_prefix = candidate_prefix(self.format.name, self.config.prefix, suspects, parts)
        for number in range(1, self.config.rounds + 1):
            outcome.rounds = number
            agent.events.on_notice(f"round {number}: sampling {self.config.candidates} candidate fixes")
            # fixes of the shown code first (the smallest change), then rewrites of the suspect's body
            batches = [(conversation, fix_prefix, fixes)]
            if rewrite is not None:
                batches.append((rewrite[0], rewrite[1], self.config.candidates - fixes))
            round_candidates: list[Candidate] = []
            for offset, (messages, prefix, count) in enumerate(batches):
                if count <= 0:
                    continue
                seed = None if agent.sampling.seed is None else agent.sampling.seed + 1009 * (number - 1) + offset
                params = SamplingParams(max_new_tokens=self.format.max_new_tokens(files), stop=self.format.stop,
                                        temperature=self.config.temperature, seed=seed, prefix=prefix,
                                        base=number <= self.config.base_rounds)
                for completion in sample(agent.engine, messages, params, count, cancel):
                    candidate = Candidate(number, len(round_candidates) + 1, completion)
                    round_candidates.append(candidate)
                    outcome.candidates.append(candidate)
                    self._evaluate(candidate, scratch, check, files, agent, seen)
                    agent.events.on_notice(f"candidate {number}.{candidate.index}: {verdict(candidate)}")
                    agent.events.on_candidate(candidate)
                    if candidate.passed:
                        outcome.winner, outcome.status = candidate, "fixed"
                        return
                if cancel is not None and cancel.is_set():
                    break
            outcome.status = "unfixed"
            if number == self.config.rounds or time.monotonic() - started > self.config.time_budget \
                    or (cancel is not None and cancel.is_set()):
                return
            best = closest(round_candidates[:fixes] or round_candidates)
            if best is None:
                return
            failure = best.failure.output if best.failure else best.error or ""
            conversation += [{"role": "assistant", "content": best.completion.text},
                             {"role": "user", "content": retry_message(check, failure, verdict(best),
                                                                       self.format, files, suspects)}]

    def _evaluate(self, candidate: Candidate, scratch: ScratchTree, check: str, files: dict[str, str],
                  agent: Agent, seen: dict[str, int]) -> None:
        """Parse, refuse test edits, apply in the scratch copy, run the check."""
        try:
            edits = self.format.parse(candidate.completion.text, files)
            for path, text in edits.items():
                if is_test_file(path, check):
                    raise CandidateError(f"the fix changes the test file {path}; fixes must not change the tests")
                check_python(path, text)
            edits = {p: t for p, t in edits.items() if t != files[p]}
            if not edits:
                raise CandidateError("the fix changes nothing")
        except CandidateError as exc:
            candidate.error = str(exc)
            return
        candidate.edits = edits
        candidate.diff = unified_diff(files, edits)
        if candidate.diff in seen:
            earlier = seen[candidate.diff]
            candidate.duplicate_of = earlier
            return
        seen[candidate.diff] = candidate.index
        scratch.reset()
        for path, text in edits.items():
            (scratch.root / path).write_text(text)
        done = run_in_repo(check, Workspace(scratch.root), agent.tools["run_tests"].config, self.candidate_timeout)
        candidate.passed, candidate.exit_code = done.ok, done.exit_code
        candidate.failure = None if done.ok else read_failure(done.output.replace(f"{scratch.root}/", ""),
                                                              scratch.root)

    # -- approval, applying, learning -----------------------------------------------------------------
    def _allowed(self, agent: Agent, check: str) -> bool:
        tool = agent.tools["run_tests"]
        if not tool.needs_approval or "run_tests" in agent.always:
            return True
        budget = self.config.candidates * self.config.rounds
        decision = agent.approver.approve(ToolCall("run_tests", {}), (
            f"$ {check}\n(then the same check on up to {budget} candidate fixes, each in a scratch copy of the "
            "repository; your files change only if you accept a fix)"))
        if decision.kind == "always":
            agent.always.add("run_tests")
        return decision.kind in ("yes", "always", "edit", "auto")

    def _finish(self, agent: Agent, request: str, outcome: RepairOutcome, result: RequestResult) -> None:
        check = outcome.check
        winner = outcome.winner
        shown = winner or closest(outcome.candidates)
        if shown is not None:  # what a follow-up of the user's judges: the reply that was applied or closest
            shown.message_id = store_candidate(agent, request, shown)
            agent.last_reply_id = shown.message_id
            result.adapter_version = shown.completion.adapter_version
        self._record_siblings(agent, request, outcome)
        result.repair = outcome
        if winner is None:
            result.stop_reason = "unfixed"
            result.tests_passed = False
            attempt = "" if shown is None or shown.failure is None else (
                f"\nThe closest attempt ({detail(shown.failure)}):\n{shown.diff}\n{shown.failure.output}")
            result.final_text = (f"No candidate fix made `{check}` pass ({len(outcome.candidates)} tried in "
                                 f"{outcome.rounds} round(s)). Nothing in your files was changed.{attempt}")
            _summarize_in_conversation(agent, outcome, result)
            return
        decision = agent.approve_change(winner.diff)
        if decision.kind == "no":
            agent.record_feedback(result, "denial", f"The user did not apply the fix. Reason: "
                                  f"{decision.reason or 'no reason given'}", winner.message_id)
            result.stop_reason, result.final_text = "denied", "The fix was not applied."
            return
        edited = (decision.args or {}).get("diff") if decision.kind == "edit" else None
        if edited is not None and edited.strip() != winner.diff.strip():
            try:  # the user's corrected diff is what lands, and what the reply learns from
                apply_patch(agent.workspace.root, edited)
            except PatchConflict as exc:
                result.stop_reason, result.final_text = "refused", f"The edited diff does not apply: {exc}"
                return
            agent.record_feedback(result, "edit", "The user corrected the fix before applying it.",
                                  winner.message_id, solution=edited)
        else:
            for path, text in winner.edits.items():
                agent.write_file(path, text, winner.message_id, result)
        outcome.applied = True
        final = run_in_repo(check, agent.workspace, agent.tools["run_tests"].config, self.config.check_timeout)
        result.tests_passed = final.ok
        result.stop_reason = "answered"
        result.final_text = (f"Fixed: the check `{check}` {'passes' if final.ok else 'still FAILS in your tree'} "
                             f"after this change ({len(outcome.candidates)} candidate(s) tried):\n{winner.diff}")
        _summarize_in_conversation(agent, outcome, result)

    def _record_siblings(self, agent: Agent, request: str, outcome: RepairOutcome) -> None:
        """Failed candidates → reprompt examples judged by their own check output; the winner → their
        solution (SDPO's successful sibling as a demonstration). Only with the setting learn_repair: on
        the agent benchmark, training on them lost 9 of 31 resolved tasks and won none (docs/agent.md)."""
        if not (agent.recorder.learn and agent.recorder.learn_repair):
            return
        failed_ids: list[int] = []
        for candidate in outcome.candidates:
            if candidate.passed or candidate.duplicate_of is not None:
                continue
            if candidate.message_id is None:
                candidate.message_id = store_candidate(agent, request, candidate)
            kind, text = candidate_feedback(outcome.check, candidate)
            agent.recorder.record(kind, text, candidate.message_id)
            failed_ids.append(candidate.message_id)
        if outcome.winner is not None and outcome.winner.message_id is not None:
            agent.recorder.mark_success(outcome.winner.message_id, failed_ids, outcome.winner.completion.text,
                                        text=f"the check `{outcome.check}` passed with this fix")


def _summarize_in_conversation(agent: Agent, outcome: RepairOutcome, result: RequestResult) -> None:
    """What the user's conversation keeps of the repair: the check's verdict and the outcome, so a later
    request (or a resumed session) knows what happened. Not a model reply: no tokens to train on."""
    agent.append_message("user", f"[continualcode ran the check `{outcome.check}`: "
                                 f"{detail(outcome.initial_failure)}; tried {len(outcome.candidates)} candidate fixes]")
    agent.append_message("assistant", result.final_text)
