"""One feedback event → training on the learner: the recipe (issue 15; SDPO.md, "From one trajectory to a
behaviour").

A feedback event is one judged response: x, y as sampled, the feedback f (and/or a solution s) and its
teacher template. Trained along y alone it corrects one trajectory. The levers below feed the same
``sdpo_step``, through the one ``Learner``, with more on-policy signal about the behaviour:

- rollouts (the paper's G rollouts per question): each round samples G fresh responses to x from the
  current student in one batched call; every round resamples, so later rounds see the new behaviour.
  The judged y stays in the first round's batch.
- expansion (context distillation, Snell et al. 2022): other prompts where the feedback may also hold —
  the user's recent prompts (the caller's) and requests the model writes itself — answered by the
  student, taught by a teacher that reads the feedback as a standing instruction (``instruction``
  template). Where it does not apply the teacher agrees with the student and the loss is near zero;
  ``by_kind`` in the summary shows it.
- teacher samples (GKD, Agarwal et al. 2024): a fraction F of the responses is sampled from the teacher
  context, then distilled with the teacher's distribution like any other response (soft labels, not
  SFT), so a behaviour the student never samples can still be learned.
- replay (forgetting control): general prompts (``probes.replay_prompts``) and accepted answers, taught
  by the weights as they were before the event on x unchanged: a KL term to the pre-update policy.
- teacher cache: the teacher pass runs once per round instead of once per step (the EMA teacher then
  moves once, at the round's end).

The defaults are the behaviour before issue 15 (y alone, one round of 4 steps); a lever becomes a
default only when ``continualcode bench learn`` measures it better. The whole event is guarded like
``Learner.learn``: a non-finite loss or a divergence above the limit in any round restores the weights
the event started from.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from continualcode.learning.probes import Accepted, replay_prompts
from continualcode.learning.types import SDPOConfig, TrainingExample

if TYPE_CHECKING:  # torch loads when an event is trained, not when the trainer or the CLI is built
    from continualcode.learning.learner import Learner

KINDS = ("judged", "rollout", "teacher", "expansion", "replay")
"""Where a training example of an event came from (``meta["kind"]``; the summary's ``by_kind``)."""
COUNTED = {"rollout": "rollouts", "teacher": "teacher_samples", "replay": "replayed"}
"""Sampled kinds and the summary's count of each (expansion prompts are counted as ``expanded``)."""


@dataclass
class LearnRecipe:
    """How one feedback event is trained (TRL style: one config per method; issue 15's levers 1-5)."""

    steps: int = 4
    """Optimizer steps per round (the presets' steps_per_feedback)."""
    rounds: int = 1
    """Rounds of sampling then ``steps`` steps; each round resamples rollouts and expansion answers."""
    rollouts: int = 0
    """G: responses sampled per round for the judged prompt, besides y (the paper uses 8)."""
    expand: int = 0
    """N: other prompts the feedback is distilled on (the caller's recent prompts first, then
    requests the model writes)."""
    teacher_samples: float = 0.0
    """F: the fraction of the G responses sampled from the teacher context (with G = 0, F > 0 adds one
    teacher sample per round)."""
    replay: bool = False
    """Replay general prompts and accepted answers against the pre-update weights."""
    replay_size: int = 4
    """Replay prompts per round (rotating through the set) and accepted answers per round."""
    cache_teacher: bool = False
    """Compute the teacher pass once per round (the EMA teacher moves at the round's end)."""
    max_new_tokens: int = 64
    temperature: float = 0.3
    max_prompt_tokens: int = 1024
    """Expansion and replay prompts longer than this are skipped (each token costs a forward on CPU)."""
    sdpo: SDPOConfig | None = None
    """Step knobs (alpha, support, top-K, templates, ...) for this event; None = the learner's own. The
    learning rate and the teacher's mode belong to the learner (its optimizer and teacher)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.rounds < 1:
            raise ValueError(f"steps and rounds must be at least 1, got {self.steps} and {self.rounds}")
        if self.rollouts < 0 or self.expand < 0 or self.replay_size < 0:
            raise ValueError("rollouts, expand and replay_size cannot be negative")
        if not 0.0 <= self.teacher_samples <= 1.0:
            raise ValueError(f"teacher_samples is a fraction in [0, 1], got {self.teacher_samples}")

    def split(self) -> tuple[int, int]:
        """(student rollouts, teacher samples) per round."""
        if self.rollouts == 0:
            return 0, int(self.teacher_samples > 0)
        teacher = round(self.teacher_samples * self.rollouts)
        return self.rollouts - teacher, teacher


@dataclass
class Progress:
    """Where an event's training is (for /status and the TUI's training panel)."""

    stage: str = "starting"
    round: int = 0
    rounds: int = 1
    step: int = 0
    steps: int = 0
    rollouts: int = 0
    """Responses sampled so far for the judged prompt (student and teacher)."""
    expanded: int = 0
    taken: int = 0
    """Optimizer steps run so far in this event."""
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def __str__(self) -> str:
        parts = [f"round {self.round}/{self.rounds}"] if self.round else []
        parts.append(f"step {self.step}/{self.steps}" if self.step else self.stage)
        if self.rollouts:
            parts.append(f"{self.rollouts} rollouts sampled")
        if self.expanded:
            parts.append(f"{self.expanded} prompts expanded")
        return " · ".join(parts + [f"{self.seconds:.0f} s"])


# ----------------------------------------------------------------------------- expansion prompts

REQUEST_PROMPT = ("Here is a request a user of this project made:\n\n{request}\n\n"
                  "Write {n} other requests the same user might make about this project, each different "
                  "from this one. Write one request per line, numbered 1. to {n}, and nothing else.")
"""What the model is asked for its own expansion prompts (our wording)."""

_LISTED = re.compile(r"^\s*(?:\d{1,2}\s*[.):]|[-*•]|request\s*\d*\s*:)\s*(.+?)\s*$", re.IGNORECASE)


def parse_requests(text: str, n: int, exclude: tuple[str, ...] = ()) -> list[str]:
    """Up to ``n`` requests from a model's numbered (or bulleted) list; when nothing is listed, plain lines
    that read like a sentence (3+ words, ending in ? . or !).

    Quotes and markdown emphasis around an item are dropped; items that are too short or long, repeat
    an earlier item or one of ``exclude`` are skipped. Anything unparseable gives [].
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    listed = [m.group(1) for m in map(_LISTED.match, lines) if m]
    candidates = listed or [line for line in lines if len(line.split()) >= 3 and line[-1] in "?.!"]
    seen = {e.strip().lower() for e in exclude}
    found: list[str] = []
    for item in candidates:
        item = item.strip().strip("*_`\"'“”").strip()
        if not 10 <= len(item) <= 300 or item.lower() in seen:
            continue
        seen.add(item.lower())
        found.append(item)
        if len(found) == n:
            break
    return found


def _last_user(messages: list[dict]) -> str:
    content = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    return content if isinstance(content, str) else ""


def _with_system(messages: list[dict], request: str) -> list[dict]:
    """A fresh one-turn conversation under x's leading system message(s)."""
    system = [m for m in messages[:1] if m.get("role") == "system"]
    return [*system, {"role": "user", "content": request}]


def expansion_prompts(learner: Learner, judged: TrainingExample, recipe: LearnRecipe,
                      recent: list[list[dict]], seed: int) -> list[list[dict]]:
    """The event's N expansion prompts: the user's recent prompts (not x), then model-written ones."""
    own = repr(judged.messages)
    chosen: list[list[dict]] = []
    for messages in recent:
        if len(chosen) < recipe.expand and repr(messages) != own and repr(messages) not in map(repr, chosen) \
                and learner.prompt_tokens(messages) <= recipe.max_prompt_tokens:
            chosen.append(messages)
    missing = recipe.expand - len(chosen)
    if missing > 0:
        request = _last_user(judged.messages)[:1200]
        ask = [{"role": "user", "content": REQUEST_PROMPT.format(request=request, n=missing)}]
        [[written]] = learner.sample([ask], n=1, max_new_tokens=min(40 * missing, 256), temperature=0.7, seed=seed)
        taken = tuple(_last_user(m) for m in chosen) + (request,)
        chosen += [_with_system(judged.messages, r) for r in parse_requests(written.text, missing, taken)]
    return chosen


# ----------------------------------------------------------------------------- one event


def _sample_round(learner: Learner, judged: TrainingExample, recipe: LearnRecipe, config: SDPOConfig,
                  expansion: list[list[dict]], replay: list[list[dict]], seed: int) -> list[TrainingExample]:
    """One batched generation: student rollouts, teacher samples, expansion and replay answers."""
    from continualcode.learning.batch import truncate_text
    from continualcode.learning.teacher import teacher_messages

    n_student, n_teacher = recipe.split()
    template = judged.template or config.template
    x = judged.messages
    rows: list[tuple[str, list[dict]]] = [("rollout", x)] * n_student
    if n_teacher:
        x_teacher = teacher_messages(x, truncate_text(learner.tokenizer, judged.feedback, config.max_reprompt_tokens),
                                     truncate_text(learner.tokenizer, judged.solution, config.max_reprompt_tokens),
                                     template, feedback_with_solution=config.feedback_with_solution)
        rows += [("teacher", x_teacher)] * n_teacher
    rows += [("expansion", p) for p in expansion] + [("replay", p) for p in replay]
    if not rows:
        return []
    groups = learner.sample([c for _, c in rows], n=1, max_new_tokens=recipe.max_new_tokens,
                            temperature=recipe.temperature, seed=seed)
    examples = []
    for (kind, context), [sample] in zip(rows, groups):
        meta = {"kind": kind}
        if kind == "replay":
            examples.append(TrainingExample(context, list(sample.token_ids), old_logprobs=list(sample.logprobs),
                                            anchor=True, meta=meta))
        elif kind == "expansion":
            examples.append(learner.example(context, sample.text, token_ids=sample.token_ids,
                                            logprobs=sample.logprobs, feedback=judged.feedback,
                                            template="instruction", meta=meta))
        else:  # the teacher's samples were drawn from x', so their log-probs are not the student's: ratio 1
            examples.append(learner.example(x, sample.text, token_ids=sample.token_ids,
                                            logprobs=sample.logprobs if kind == "rollout" else None,
                                            feedback=judged.feedback, solution=judged.solution, template=template,
                                            meta=meta))
    return examples


def _tally(by_kind: dict, examples: list[TrainingExample], history: list[dict]) -> None:
    """Add a round's per-example step stats to the per-kind totals (token-weighted)."""
    for kind in {e.meta.get("kind", "judged") for e in examples}:
        by_kind.setdefault(kind, {"examples": 0, "tokens": 0, "loss_sum": 0.0, "divergence_sum": 0.0})
        by_kind[kind]["examples"] += sum(e.meta.get("kind", "judged") == kind for e in examples)
    for metrics in history:
        for example, stats in zip(examples, metrics.get("example_stats") or []):
            if stats is None:
                continue
            entry = by_kind[example.meta.get("kind", "judged")]
            entry["tokens"] += stats["tokens"]
            entry["loss_sum"] += stats["loss"] * stats["tokens"]
            entry["divergence_sum"] += stats["divergence"] * stats["tokens"]


def _kind_means(by_kind: dict) -> dict:
    return {kind: {"examples": v["examples"], "tokens": v["tokens"],
                   "loss": v["loss_sum"] / v["tokens"] if v["tokens"] else None,
                   "divergence": v["divergence_sum"] / v["tokens"] if v["tokens"] else None}
            for kind, v in by_kind.items()}


def learn_from_feedback(learner: Learner, judged: TrainingExample, recipe: LearnRecipe | None = None, *,
                        recent_prompts: list[list[dict]] = (), replay: list[list[dict]] | None = None,
                        accepted: list[Accepted] = (), progress: Callable[[Progress], None] | None = None,
                        seed: int = 0) -> dict:
    """Train ``learner`` on one feedback event with ``recipe``; returns the event's summary.

    ``judged`` is the event as a training example (x, y as sampled, f, s, template). ``recent_prompts``:
    the user's recent conversations (expansion candidates). ``replay``: general prompts (None =
    ``probes.replay_prompts()``). ``accepted``: answers that worked (replayed as they are).
    ``progress`` gets a ``Progress`` at each stage and step.

    The summary is ``summarize_steps``'s over every step, plus: seconds (the whole event, sampling
    included), step_seconds, rounds, rollouts (responses sampled for x), teacher_samples, expanded,
    expansion_prompts (their last user message), replayed, by_kind ({kind: examples, tokens, loss,
    divergence}), and rolled_back/failed when the guard restored the weights.
    """
    from continualcode.learning.learner import summarize_steps
    from continualcode.learning.teacher import TeacherState

    recipe = recipe or LearnRecipe()
    config = recipe.sdpo or learner.config
    status = Progress(rounds=recipe.rounds, steps=recipe.steps)

    def tell(**changes) -> None:
        for name, value in changes.items():
            setattr(status, name, value)
        if progress is not None:
            progress(status)

    snapshot = learner.snapshot()
    anchor = TeacherState.frozen(learner.model) if recipe.replay else None
    judged = dataclasses.replace(judged, meta={**judged.meta, "kind": "judged"})
    expansion: list[list[dict]] = []
    if recipe.expand and judged.feedback:
        tell(stage="writing expansion prompts")
        expansion = expansion_prompts(learner, judged, recipe, list(recent_prompts), seed + 17)
    pool: list[list[dict]] = []
    kept: list[TrainingExample] = []
    if recipe.replay:
        pool = [p for p in (replay_prompts() if replay is None else replay)
                if learner.prompt_tokens(p) <= recipe.max_prompt_tokens]
        kept = [TrainingExample(a.messages, list(a.response_ids), anchor=True, meta={"kind": "replay"})
                for a in list(accepted)[: recipe.replay_size]]
    history: list[dict] = []
    by_kind: dict = {}
    counts = {"rollouts": 0, "teacher_samples": 0, "replayed": 0}
    sample_seconds = 0.0
    verdict = None
    for round_ in range(recipe.rounds):
        tell(round=round_ + 1, step=0, stage="sampling", expanded=len(expansion))
        started = time.perf_counter()
        size = min(recipe.replay_size, len(pool))
        replay_now = [pool[(round_ * size + i) % len(pool)] for i in range(size)] if pool else []
        sampled = _sample_round(learner, judged, recipe, config, expansion, replay_now, seed + 1009 * (round_ + 1))
        sample_seconds += time.perf_counter() - started
        examples = ([judged] if round_ == 0 else []) + sampled + kept
        for example in sampled:
            if example.meta["kind"] in COUNTED:
                counts[COUNTED[example.meta["kind"]]] += 1
        tell(stage="training", rollouts=counts["rollouts"] + counts["teacher_samples"])
        steps = learner.run_steps(examples, recipe.steps, config=config, anchor=anchor,
                                  cache_teacher=recipe.cache_teacher,
                                  on_step=lambda k, _: tell(step=k, taken=status.taken + 1))
        history += steps
        _tally(by_kind, examples, steps)
        verdict = learner.verdict(history)
        if verdict is not None and verdict["failed"]:
            break
    summary = summarize_steps(history)
    summary.update(counts, step_seconds=summary["seconds"], sample_seconds=sample_seconds,
                   seconds=status.seconds, rounds=status.round, expanded=len(expansion),
                   expansion_prompts=[_last_user(p) for p in expansion], by_kind=_kind_means(by_kind))
    if verdict is not None:
        learner.restore(snapshot)
        summary.update(verdict)
    tell(stage="done", step=0)
    return summary
