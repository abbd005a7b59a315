"""What one SDPO step is configured with and fed: the config, the example, the teacher templates.

Plain data, no torch: the agent's feedback recorder, the store-row converter,
the batch builder, the loss and the benchmarks all share these definitions
(../shared/SDPO.md, "Setting" and "Teacher context").
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The reference reprompt templates (lasgroup/SDPO and trl.experimental.sdpo are
# identical). Kept verbatim: the paper's numbers were measured with this text.
REPROMPT_TEMPLATE = "{prompt}{solution}{feedback}\n\nCorrectly solve the original question.\n"


REPROMPT_SOLUTION = "\nCorrect solution:\n\n{solution}\n\n"


REPROMPT_FEEDBACK = "\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback}\n\n"


# The hindsight variant (idea from lasgroup/user_interactions; our wording). It
# deliberately does NOT call the earlier answer unsuccessful: measured on
# Qwen2.5-Coder-0.5B, the reprompt template flipped a correct YES to NO when the
# feedback was only about format (SDPO.md, last probe table row).
HINDSIGHT_FEEDBACK = (
    "\n\n[Hindsight] The user's next message, written after seeing your reply, is shown "
    "below ahead of time so that your reply can already take it into account.\n"
    "Next user message: {feedback}\n"
)


HINDSIGHT_SOLUTION = "\n\n[Hindsight] A reply the user accepted for this request:\n\n{solution}\n"


# The standing-instruction form (our wording), for context distillation (issue 15): the feedback was given
# on another request, so the teacher is told it holds from now on wherever it applies, and to answer as
# usual where it does not (there the teacher agrees with the student and the loss vanishes).
INSTRUCTION_FEEDBACK = (
    "\n\n[Standing instruction] Earlier in this project the user told you: {feedback}\n"
    "Follow this from now on wherever it applies to the request above; where it does not apply, "
    "answer as you normally would.\n"
)


# The feedback before the request, as if the user had said it first (our form, issue 15). Measured on
# SmolLM2 under the REPL's system prompt (bullet-list, 4 samples × 9 prompts): the hindsight block after
# the request was echoed ("[Hindsight] The user's next message…", eval 0.04 against 0.33 with no
# feedback), the feedback first was followed (eval 0.58, general 1.00); docs/learning.md.
PREFIX_FEEDBACK = "{feedback}\n\n{prompt}"


TEMPLATES = ("reprompt", "hindsight", "instruction", "prefix")


SUPPORTS = ("student", "union", "full")
"""Token ids the divergence is taken over (``SDPOConfig.support``)."""


TEACHER_MODES = ("ema", "trust_region", "base", "live")


@dataclass
class SDPOConfig:
    """Every knob of an SDPO step. Defaults follow the reference (lasgroup/SDPO YAML) unless noted."""

    alpha: float = 1.0
    """0 = forward KL(teacher‖student), 1 = reverse KL, between = generalized JSD. Reference default 0.5;
    1.0 is the paper's setting for rich feedback, and on the learning bench (docs/learning.md) it lifted
    Qwen2.5-Coder's held-out pass rate from 0.24 (alpha 0.5, = base) to 0.32 and tied on SmolLM2."""
    top_k: int | None = 100
    """K of the top-K support (None = full vocabulary). Reference default 100."""
    support: str = "student"
    """Token ids the divergence compares the two distributions on: ``student`` (the student's top-K,
    the reference), ``union`` (the student's and the teacher's top-K, so a token only the teacher ranks
    high gets its own entry instead of hiding in the tail bucket), ``full`` (the whole vocabulary; top_k
    ignored). The tail bucket / renormalization applies to student and union alike."""
    add_tail: bool = True
    """Append a tail bucket 1 − Σ top-K probs (else renormalize the K entries). Reference default on."""
    is_clip: float | None = 2.0
    """Upper clip of the off-policy importance ratio (None = off). Reference default 2.0."""
    teacher: str = "ema"
    """Teacher weights: ema | trust_region | base | live. Reference default ema; a live teacher at
    lr 5e-4 collapsed SmolLM2 into newlines in our planning probe (SDPO.md)."""
    teacher_update_rate: float = 0.05
    """EMA rate r (teacher ← (1−r)·teacher + r·student), or the trust-region mix. Reference default 0.05."""
    learning_rate: float = 1e-4
    """AdamW lr for the LoRA parameters. The reference's 1e-5 is for full fine-tuning; LoRA's best lr is
    about 10× the full-FT lr (Schulman et al., "LoRA Without Regret", 2025); the per-model value comes
    from adapters/presets.toml and was measured not to collapse (docs/sdpo.md)."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip (verl's actor grad_clip and lasgroup/user_interactions both use 1.0)."""
    max_reprompt_tokens: int = 1024
    """Token cap on each of the feedback and solution texts put into the teacher context (y is never
    cut). The reference caps the whole reprompted prompt at 10240 tokens on GPUs; on CPU the teacher
    forward pays for every token, so we cap the added text and keep its head and tail (errors and test
    summaries sit at the end)."""
    template: str = "reprompt"
    """Teacher template for examples that do not name one: reprompt (reference text; for failures),
    hindsight (lasgroup/user_interactions idea; for conversational follow-ups) or instruction (the
    feedback as a standing instruction, for prompts other than the judged one)."""
    feedback_with_solution: bool = False
    """Keep the feedback when a solution exists. Reference default: feedback only without a solution."""
    replay_weight: float = 1.0
    """With replay examples in a step (the recipe's forgetting control), the loss is the token-mean over
    the feedback's rows plus ``replay_weight`` × the token-mean over the replay rows, so the replay
    answers' count does not dilute the feedback (a plain token-mean over all rows gave it about a fifth)."""
    hybrid_lambda: float = 0.0
    """λ in A = λ·A_GRPO + (1−λ)·A_SDPO (paper, hybrid with scalar rewards). 0 = pure distillation;
    > 0 switches to the advantage (policy-gradient) form. Not in the reference code."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.teacher not in TEACHER_MODES:
            raise ValueError(f"teacher must be one of {TEACHER_MODES}, got {self.teacher!r}")
        if self.template not in TEMPLATES:
            raise ValueError(f"template must be one of {TEMPLATES}, got {self.template!r}")
        if self.support not in SUPPORTS:
            raise ValueError(f"support must be one of {SUPPORTS}, got {self.support!r}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.replay_weight < 0:
            raise ValueError(f"replay_weight cannot be negative, got {self.replay_weight}")
        if not 0.0 <= self.hybrid_lambda <= 1.0:
            raise ValueError(f"hybrid_lambda must be in [0, 1], got {self.hybrid_lambda}")


@dataclass
class TrainingExample:
    """One judged response: x (``messages``), y (``response_ids``) and what came after it.

    ``response_ids`` are y exactly as sampled, including the final eos token if
    generation stopped on it, so student and teacher score the same tokens.
    ``template`` None means ``SDPOConfig.template``. An example with neither
    feedback nor solution is masked out (unless it has a reward and
    hybrid_lambda > 0, or it is an ``anchor`` example).
    """

    messages: list[dict]
    response_ids: list[int]
    feedback: str | None = None
    solution: str | None = None
    template: str | None = None
    old_logprobs: list[float] | None = None
    reward: float | None = None
    meta: dict = field(default_factory=dict)
    """Caller's bookkeeping (e.g. the store's example id, the recipe's kind); never read by SDPO."""
    anchor: bool = False
    """A replay example (forgetting control): its teacher is the step's anchor (the weights before the
    feedback event), reading x unchanged, so the loss is a divergence to the pre-update policy."""

    def has_signal(self, config: SDPOConfig) -> bool:
        if not self.response_ids:
            return False
        if self.anchor:
            return True
        if (self.feedback and self.feedback.strip()) or (self.solution and self.solution.strip()):
            return True
        return config.hybrid_lambda > 0 and self.reward is not None


TEMPLATE_FOR_KIND = {
    "followup": "hindsight",
    "manual": "hindsight",
    "denial": "reprompt",
    "edit": "reprompt",
    "tool_error": "reprompt",
    "parse_error": "reprompt",
    "test_failure": "reprompt",
    "undo": "reprompt",
    "hook": "reprompt",
}
"""Feedback kinds that become training examples, and the teacher template each uses."""


FOLLOWUP_TEMPLATES = ("hindsight", "prefix")
"""Templates a follow-up message (the kinds mapped to hindsight above) may be read with (setting
followup_template)."""


def template_for_kind(kind: str, followup: str = "hindsight") -> str:
    """The teacher template of a feedback kind; ``followup`` replaces hindsight (followup, manual)."""
    if kind not in TEMPLATE_FOR_KIND:
        raise ValueError(f"unknown feedback kind {kind!r}; use one of {sorted(TEMPLATE_FOR_KIND)}")
    if followup not in FOLLOWUP_TEMPLATES:
        raise ValueError(f"followup_template must be one of {', '.join(FOLLOWUP_TEMPLATES)}, got {followup!r}")
    template = TEMPLATE_FOR_KIND[kind]
    return followup if template == "hindsight" else template
