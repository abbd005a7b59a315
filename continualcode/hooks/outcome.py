"""Judging the agent turns behind staged changes: hook feedback on failure, a solution on a pass."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from continualcode.config import Settings
from continualcode.hooks.checks import CheckResult, git

FEEDBACK_OUTPUT_CHARS = 3000
"""Tail of the check output kept in feedback: a small model's context is short, the end matters."""


@dataclass(frozen=True)
class AgentChange:
    tool_call_id: int
    message_id: int
    path: str
    written: str      # edit: the replacement text; write_file: the content


def agent_changes(store, repo: Path, paths: list[str]) -> list[AgentChange]:
    """Successful write_file/edit calls on `paths`, made since each path was last committed; newest first."""
    wanted = set(paths)
    since = {p: _last_commit_time(repo, p) for p in paths}
    changes = []
    for row in store.successful_writes():
        args = row["arguments"]
        path = posixpath.normpath(str(args.get("path", "")))
        if path not in wanted:
            continue
        created = datetime.fromisoformat(row["created"])
        if since[path] is not None and created < since[path]:
            continue
        written = args.get("replace" if row["name"] == "edit" else "content", "")
        changes.append(AgentChange(row["id"], row["message_id"], path, written))
    return changes


def judged_changes(changes: list[AgentChange], tree: Path) -> list[AgentChange]:
    """The most recent change per path whose written text is still in the staged file."""
    judged, seen = [], set()
    for change in changes:
        if change.path in seen:
            continue
        staged = tree / change.path
        if not staged.is_file():
            continue
        if change.written.strip() and change.written.strip() not in staged.read_text(errors="replace"):
            continue
        seen.add(change.path)
        judged.append(change)
    return judged


def _last_commit_time(repo: Path, path: str) -> datetime | None:
    done = git(repo, "log", "-1", "--format=%ct", "--", path, check=False)
    stamp = done.stdout.strip()
    return datetime.fromtimestamp(int(stamp), timezone.utc) if done.returncode == 0 and stamp else None


def record_outcome(store, settings: Settings, judged: list[AgentChange], earlier: list[AgentChange],
                   checks: list[CheckResult]) -> list[dict]:
    """Failure: "hook" feedback (queues examples). Pass: "hook_pass", and the passing turn
    becomes the solution of earlier hook failures on the same path. One of each per turn:
    committing the same broken change twice is not twice the evidence."""
    from continualcode.agent.feedback import FeedbackRecorder

    recorder = FeedbackRecorder(store, learn=settings.learn)
    failed = next((c for c in checks if not c.ok), None)
    kind = "hook" if failed else "hook_pass"
    recorded = []
    for change in judged:
        if any(f["kind"] == kind for f in store.message_feedback(change.message_id)):
            continue
        text = "pre-commit checks passed on the staged changes" if failed is None else (
            f"The pre-commit checks failed on the staged changes to {change.path}.\n"
            f"{failed.name}: $ {failed.command} (exit code {failed.exit_code})\n{_tail(failed.output)}")
        example = recorder.record(kind, text, change.message_id, tool_call_id=change.tool_call_id)
        recorded.append({"kind": kind, "message_id": change.message_id, "example_id": example})
        if failed is None:
            _offer_solution(store, change, [e for e in earlier if e.path == change.path])
    return recorded


def _offer_solution(store, passing: AgentChange, attempts: list[AgentChange]) -> None:
    """SDPO's solution s: a successful sibling attempt, never a sample's own success."""
    solution = store.message(passing.message_id)["content"]
    for attempt in attempts:
        if attempt.message_id == passing.message_id:
            continue
        for example in store.examples_for_message(attempt.message_id):
            if (example["s"] is None and example["status"] == "pending"
                    and store.feedback(example["feedback_id"])["kind"] == "hook"):
                store.set_example_solution(example["id"], solution)


def _tail(text: str, limit: int = FEEDBACK_OUTPUT_CHARS) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n{text[-limit:]}"
