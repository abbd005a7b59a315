"""Feedback → training examples.

Every feedback event judges one assistant message. It is stored as a feedback
row and, when learning is on, becomes an SDPO training example:

- x: the conversation exactly as the model saw it before the judged message,
- y: the judged message (its sampled token ids and log-probs),
- f: the feedback text, s: a solution when one exists,
- template: "hindsight" for conversational follow-ups (they make no claim that
  the answer failed; SDPO.md measured that the reprompt template flips correct
  answers), "reprompt" for failures (denials, tool errors, failing tests,
  parse errors, /undo, hook failures).

The store knows nothing of SDPO; this module is the only place that decides
how an event becomes an example.
"""

from __future__ import annotations

from typing import Callable

from continualcode.learning.types import template_for_kind
from continualcode.store.db import Store

NO_EXAMPLE_KINDS = {"test_pass", "hook_pass"}
"""Kinds recorded as events only: a success is not a correction (it becomes a solution)."""


class FeedbackRecorder:
    """Records feedback events and turns them into pending training examples."""

    def __init__(self, store: Store, *, learn: bool = True, on_example: Callable[[int], None] | None = None,
                 followup_template: str = "hindsight", learn_repair: bool = False):
        template_for_kind("followup", followup_template)  # a bad template fails here, not at the first feedback
        self.store = store
        self.learn = learn
        self.on_example = on_example
        self.followup_template = followup_template
        """The teacher template of followup (and manual) feedback; the other kinds keep the reprompt."""
        self.learn_repair = learn_repair
        """Whether the repair flow's candidates become examples (setting learn_repair, off by default)."""

    def record(
        self,
        kind: str,
        text: str,
        message_id: int,
        *,
        tool_call_id: int | None = None,
        solution: str | None = None,
        x: list[dict] | None = None,
    ) -> int | None:
        """Store the event; return the id of the training example it queued, if any.

        `x` is the conversation the judged reply was sampled for; by default the
        messages before it in its session (a sibling candidate of the repair
        flow is stored apart from the conversation it answers, so it passes x).
        """
        feedback_id = self.store.add_feedback(kind, text, message_id, tool_call_id=tool_call_id)
        if not self.learn or kind in NO_EXAMPLE_KINDS:
            return None
        template = template_for_kind(kind, self.followup_template)  # an unknown kind fails before any lookup
        message = self.store.message(message_id)
        if message is None or message["role"] != "assistant":
            raise ValueError(f"feedback must judge an assistant message, got {message_id}")
        x = self.store.conversation_before(message) if x is None else x
        example_id = self.store.add_example(feedback_id, message_id, x, text, s=solution,
                                            template=template)
        if self.on_example is not None:
            self.on_example(example_id)
        return example_id

    def mark_success(self, message_id: int, earlier_failures: list[int], solution: str,
                     text: str = "checks passed") -> None:
        """A passing check: record it, and offer `solution` to earlier failed attempts.

        SDPO uses a successful sibling attempt as a demonstration for the failed
        ones (never a sample's own success as its own solution).
        """
        self.store.add_feedback("test_pass", text, message_id)
        for failed in earlier_failures:
            if failed == message_id:
                continue
            for example in self.store.examples_for_message(failed):
                if example.get("s") is None and example["status"] == "pending":
                    self.store.set_example_solution(example["id"], solution)
