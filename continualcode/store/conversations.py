"""Conversations in the store: sessions, messages (with the sampled token ids, log-probs and
adapter version of every assistant turn), tool calls with their approval, and feedback events.

Every text is stored redacted (`rows.prepare_row`); the live conversation in the agent keeps
the original, so only a resumed session sees `[REDACTED]` where a secret was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from continualcode.store.rows import (
    FEEDBACK_KINDS,
    ROLES,
    StoreError,
    check_choice,
    tool_call_fields,
    utc_now,
)


class ConversationRecords:
    """The conversation tables of `continualcode.store.db.Store` (a mixin over its connection)."""

    # Sessions ------------------------------------------------------------------

    def start_session(self, repo_root: str | Path, model: str, engine: str,
                      title: str | None = None) -> int:
        """Record a new session; returns its id (what `--resume ID` takes)."""
        return self._insert("sessions", {"created": utc_now(), "repo_root": str(repo_root),
                                         "model": model, "engine": engine, "title": title})

    def set_session_title(self, session_id: int, title: str) -> None:
        """Name a session after its first prompt, which arrives after it starts."""
        self._update("sessions", session_id, {"title": title})

    def end_session(self, session_id: int) -> None:
        self._update("sessions", session_id, {"ended": utc_now()})

    def session(self, session_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM sessions WHERE id = ?", [session_id])

    def latest_session(self) -> dict[str, Any] | None:
        """The most recently started conversation (what a bare `--resume` picks)."""
        return self._one("SELECT * FROM sessions WHERE engine IS NOT 'repair' ORDER BY id DESC LIMIT 1")

    def list_sessions(self, limit: int = 20, *, candidates: bool = False) -> list[dict[str, Any]]:
        """Newest first, each with a `messages` count, for `/resume` to list. The repair flow's stored
        candidates (sessions of kind "repair", one candidate each) are left out unless asked for."""
        where = "" if candidates else "WHERE s.engine IS NOT 'repair' "
        return self._rows(
            "SELECT s.*, (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) AS messages "
            f"FROM sessions s {where}ORDER BY s.id DESC LIMIT ?", [limit])

    def resume_session(self, session_id: int | None = None) -> dict[str, Any]:
        """The session to continue (the latest when `session_id` is None), reopened."""
        found = self.latest_session() if session_id is None else self.session(session_id)
        if found is None:
            which = "no sessions yet" if session_id is None else f"no session {session_id}"
            raise StoreError(f"{which} in {self.path}; `/resume` lists the sessions there are")
        self._update("sessions", found["id"], {"ended": None})
        found["ended"] = None
        return found

    # Messages ------------------------------------------------------------------

    def add_message(self, session_id: int, role: str, content: str, *,
                    token_ids: list[int] | None = None, logprobs: list[float] | None = None,
                    adapter_version: str | None = None) -> int:
        """Append a message to a session; returns its id.

        For assistant turns pass the sampled `token_ids`, their `logprobs` under
        the sampling weights, and the `adapter_version` that produced them
        (None = base weights): the trainer needs all three. If redaction changes
        `content`, they are not stored (they would spell the secret) and the row
        is flagged `redacted`.
        """
        check_choice("role", role, ROLES)
        if token_ids is not None and logprobs is not None and len(token_ids) != len(logprobs):
            raise ValueError(f"{len(token_ids)} token ids but {len(logprobs)} log-probs")
        with self.transaction():
            idx = self.db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM messages WHERE session_id = ?",
                                  [session_id]).fetchone()[0]
            return self._insert("messages", {
                "session_id": session_id, "idx": idx, "role": role, "content": content,
                "token_ids": token_ids, "logprobs": logprobs,
                "adapter_version": adapter_version, "created": utc_now()})

    def message(self, message_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM messages WHERE id = ?", [message_id])

    def session_messages(self, session_id: int) -> list[dict[str, Any]]:
        """A session's messages in order (what resuming replays)."""
        return self._rows("SELECT * FROM messages WHERE session_id = ? ORDER BY idx", [session_id])

    # Tool calls ------------------------------------------------------------------

    def add_tool_call(self, message_id: int, name: str, arguments: dict[str, Any],
                      **fields: Any) -> int:
        """Record a tool call issued by assistant message `message_id`; returns its id.

        `fields` are any of TOOL_CALL_FIELDS (usually filled in later by
        `update_tool_call`): decision (one of DECISIONS), decision_reason,
        edited_arguments (dict), result (text), exit_code, ok (bool), duration (s).
        """
        record = {"message_id": message_id, "name": name, "arguments": arguments, "created": utc_now()}
        return self._insert("tool_calls", record | tool_call_fields(fields))

    def update_tool_call(self, tool_call_id: int, **fields: Any) -> None:
        """Set the decision, result, exit code... of a recorded call (see `add_tool_call`)."""
        record = tool_call_fields(fields)
        if record and self._update("tool_calls", tool_call_id, record) == 0:
            raise ValueError(f"no tool call {tool_call_id}")

    def tool_call(self, tool_call_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM tool_calls WHERE id = ?", [tool_call_id])

    def successful_writes(self) -> list[dict[str, Any]]:
        """Successful write_file/edit calls, newest first (what the pre-commit hook judges)."""
        return self._rows("SELECT id, message_id, name, arguments, created FROM tool_calls "
                          "WHERE name IN ('write_file', 'edit') AND ok = 1 ORDER BY id DESC")

    def message_tool_calls(self, message_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM tool_calls WHERE message_id = ? ORDER BY id", [message_id])

    # Feedback ------------------------------------------------------------------

    def add_feedback(self, kind: str, text: str, message_id: int,
                     tool_call_id: int | None = None) -> int:
        """Record feedback judging assistant message `message_id`; returns its id."""
        check_choice("feedback kind", kind, FEEDBACK_KINDS)
        return self._insert("feedback", {"kind": kind, "text": text, "message_id": message_id,
                                         "tool_call_id": tool_call_id, "created": utc_now()})

    def feedback(self, feedback_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM feedback WHERE id = ?", [feedback_id])

    def message_feedback(self, message_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM feedback WHERE message_id = ? ORDER BY id", [message_id])

    def feedback_counts(self, session_id: int | None = None) -> dict[str, int]:
        """Number of feedback events by kind (all sessions, or one)."""
        sql = "SELECT f.kind, COUNT(*) AS n FROM feedback f"
        params: list[Any] = []
        if session_id is not None:
            sql += " JOIN messages m ON m.id = f.message_id WHERE m.session_id = ?"
            params.append(session_id)
        return {row["kind"]: row["n"] for row in self._rows(sql + " GROUP BY f.kind", params)}

    def messages_with_feedback(self, session_id: int) -> list[dict[str, Any]]:
        """A session's judged messages in order, each with its `feedback` rows and the
        `examples` made from it (for `/feedback` and the credit view)."""
        messages = self._rows(
            "SELECT * FROM messages WHERE session_id = ? AND id IN (SELECT message_id FROM feedback) "
            "ORDER BY idx", [session_id])
        for message in messages:
            message["feedback"] = self.message_feedback(message["id"])
            message["examples"] = self.examples_for_message(message["id"])
        return messages


    def conversation_before(self, message: dict) -> list[dict[str, str]]:
        """The messages of the judged message's session that precede it, as the model saw them."""
        return [{"role": m["role"], "content": m["content"]}
                for m in self.session_messages(message["session_id"]) if m["idx"] < message["idx"]]
