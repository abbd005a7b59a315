"""The promotion gate: a new adapter version goes live only if it does not regress.

SDPO on a small model can learn the feedback and forget the task: planning
probes collapsed SmolLM2 into "NO" to every question (../shared/SDPO.md). So
after each publish the trainer calls ``promotion_gate(trainer, version)``,
which scores the candidate against the live version, on the trainer's own
model (the serving engine is never touched), over a small replay set:

- general probes (``GENERAL_PROBES``: arithmetic, a fact, a tiny function,
  yes/no) with regex checks;
- the prompts of the most recent feedback examples. They have no regex, so
  their check is that the greedy answer is not degenerate (empty, or one
  chunk repeated over and over);
- the mean per-token log-prob of recently accepted answers (solutions of
  examples, replies whose tests or hooks passed): a drop means the new
  weights moved away from what worked.

Rejected (kept on disk, not served; ``/status`` and ``adapters list`` show the
reason) when the pass rate falls by more than ``threshold``, the accepted
log-prob falls by more than ``logprob_drop`` nats per token, or the answers
collapse to one repeated answer where the live version's did not.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from continualcode.learning.checks import Check
from continualcode.learning.probes import GENERAL_PROBES, Accepted, accepted_answers

if TYPE_CHECKING:
    from continualcode.config import Settings
    from continualcode.learning.learner import Learner
    from continualcode.learning.trainer import GateFn, Trainer


_LOOP = re.compile(r"(?s)(.{6,}?)\1{3,}")


def degenerate(text: str) -> bool:
    """Empty, or some chunk of 6+ characters repeated 4+ times in a row (a generation loop)."""
    return not text.strip() or _LOOP.search(text) is not None


@dataclass
class GateConfig:
    """What the gate replays and how much regression it tolerates."""

    threshold: float = 0.15
    """Largest allowed drop of the replay pass rate (0-1) against the live version (the setting
    ``gate_threshold``)."""
    logprob_drop: float = 0.5
    """Largest allowed drop (nats per token) of the accepted answers' mean log-prob."""
    replay_size: int = 4
    """Most recent distinct feedback prompts replayed."""
    accepted_size: int = 4
    """Most recent accepted answers scored."""
    max_new_tokens: int = 32
    """Greedy answer length per replay prompt: the probes' answers fit (the add function ends by token
    ~20); generation is most of the gate's cost on CPU."""
    max_prompt_tokens: int = 1024
    """Replay prompts longer than this are skipped (each costs a forward per token on CPU)."""
    probes: tuple[Check, ...] = field(default=GENERAL_PROBES)


def gate_checks(recent: Iterable[list[dict]], config: GateConfig, exclude: Iterable[list[dict]] = ()) -> list[Check]:
    """The general probes (minus any conversation in ``exclude``: a benchmark's held-out items), then the
    first ``replay_size`` distinct non-empty prompts of ``recent`` (newest first; checked for degenerate
    answers)."""
    skip = {repr(list(m)) for m in exclude}
    checks = [c for c in config.probes if repr(list(c.messages)) not in skip]
    seen: set[str] = set()
    for messages in recent:
        key = repr(messages)
        if key in seen or not messages:
            continue
        seen.add(key)
        checks.append(Check(messages))
        if len(seen) >= config.replay_size:
            break
    return checks


def replay_checks(store, config: GateConfig) -> list[Check]:
    """The general probes, then the latest distinct feedback prompts of the store."""
    return gate_checks((example["x"] for example in store.recent_examples(config.replay_size * 4)), config)


def _weights(trainer: Trainer, version: str | None):
    """Run the trainer's learner as ``version`` (None = base); its own tensors, EMA teacher and
    optimizer state are untouched, so a promoted candidate keeps training exactly where it was."""
    if version is None:
        return trainer.learner.weights("base")
    if version == trainer.loaded_version:
        return trainer.learner.weights(None)
    return trainer.learner.weights(trainer.registry.load_tensors(version))


def score(learner: Learner, key: str, checks: list[Check], answers: list[Accepted], config: GateConfig,
          remembered: dict) -> dict:
    """Greedy answers of the weights ``learner`` runs now to every check, their pass rate, the log-prob.

    ``key`` names those weights in ``remembered``: a published version's weights never change, so its
    greedy answer to a prompt is remembered and the live version's answers to the probes and older
    replay prompts cost nothing at the next gate.
    """
    keys = [(key, repr(c.messages), config.max_new_tokens) for c in checks]
    missing = [i for i, k in enumerate(keys) if k not in remembered]
    if missing:
        groups = learner.sample([checks[i].messages for i in missing], n=1,
                                max_new_tokens=config.max_new_tokens, temperature=0.0)
        if len(remembered) > 1024:
            remembered.clear()
        for i, group in zip(missing, groups):
            remembered[keys[i]] = group[0].text
    texts = [remembered[k] for k in keys]
    passed = [c.passes(t) if c.pass_regex or c.fail_regex else not degenerate(t) for c, t in zip(checks, texts)]
    answered = [t.strip() for t in texts if t.strip()]
    return {"pass": sum(passed) / len(passed), "passed": passed, "texts": texts, "generated": len(missing),
            "distinct": len(set(answered)) / len(texts),
            "accepted_logprob": learner.mean_logprob([(a.messages, a.response_ids) for a in answers])}


def decide(live: dict, candidate: dict, config: GateConfig) -> tuple[str, str]:
    """(decision, reason) from the two versions' scores; the reason says what moved and by how much."""
    drop = live["pass"] - candidate["pass"]
    if drop > config.threshold + 1e-9:
        return "rejected", (f"replay pass rate fell {live['pass']:.2f} → {candidate['pass']:.2f} "
                            f"(more than the {config.threshold:.2f} allowed)")
    if live["accepted_logprob"] is not None and candidate["accepted_logprob"] is not None:
        fell = live["accepted_logprob"] - candidate["accepted_logprob"]
        if fell > config.logprob_drop:
            return "rejected", (f"accepted answers' log-prob fell {live['accepted_logprob']:.2f} → "
                                f"{candidate['accepted_logprob']:.2f} nats/token (more than {config.logprob_drop})")
    if candidate["distinct"] < live["distinct"] and candidate["distinct"] <= 0.5:
        return "rejected", (f"answers collapsed: only {candidate['distinct']:.0%} of replay answers differ "
                            f"(live: {live['distinct']:.0%})")
    logprob = ""
    if candidate["accepted_logprob"] is not None:
        logprob = f", accepted log-prob {live['accepted_logprob']:.2f} → {candidate['accepted_logprob']:.2f}"
    return "promoted", f"replay pass {live['pass']:.2f} → {candidate['pass']:.2f}{logprob}"


def promotion_gate(trainer: Trainer, version: str, config: GateConfig | None = None,
                   remembered: dict | None = None) -> dict:
    """Score ``version`` against the live version; usable directly as the Trainer's ``gate``.

    Returns {"decision": "promoted"|"rejected", "reason", "scores"}; scores
    hold both versions' pass rates, accepted log-probs, the item counts and the
    seconds the gate took (its cost, shown by ``continualcode report``).
    ``remembered`` carries greedy answers between calls (see ``PromotionGate``).
    """
    config = config or GateConfig()
    remembered = {} if remembered is None else remembered
    started = time.perf_counter()
    live_version = trainer.registry.live()
    live_name = live_version.version if live_version else None
    checks = replay_checks(trainer.store, config)
    learner = trainer.learner
    checks = [c for c in checks if learner.prompt_tokens(c.messages) <= config.max_prompt_tokens]
    answers = accepted_answers(trainer.store, learner.tokenizer, config.accepted_size)
    with _weights(trainer, version):
        candidate = score(learner, version, checks, answers, config, remembered)
    with _weights(trainer, live_name):
        live = score(learner, live_name or "base", checks, answers, config, remembered)
    return _decision(live_name or "base", live, candidate, checks, len(answers), config, started)


def _decision(live_name: str, live: dict, candidate: dict, checks: list[Check], accepted: int,
              config: GateConfig, started: float) -> dict:
    """``decide``'s decision and reason with the record: both versions' pass rates, log-probs, distinct
    shares, counts, seconds, and ``regressed``: the prompts (their last message, cut to 80 characters)
    the live version passed and the candidate failed; a rejection's reason names them."""
    decision, reason = decide(live, candidate, config)
    regressed = [str(c.messages[-1].get("content") or "")[:80]
                 for c, was, now in zip(checks, live["passed"], candidate["passed"]) if was and not now]
    if decision == "rejected" and regressed:
        reason += "; now failing: " + ", ".join(repr(r) for r in regressed)
    scores = {
        "live_version": live_name,
        "pass_live": live["pass"], "pass_candidate": candidate["pass"],
        "accepted_logprob_live": live["accepted_logprob"], "accepted_logprob_candidate": candidate["accepted_logprob"],
        "distinct_live": live["distinct"], "distinct_candidate": candidate["distinct"],
        "items": len(checks), "accepted": accepted, "generated": candidate["generated"] + live["generated"],
        "regressed": regressed, "threshold": config.threshold, "seconds": time.perf_counter() - started,
    }
    return {"decision": decision, "reason": reason, "scores": scores}


def gate_event(learner: Learner, before: dict, checks: list[Check], config: GateConfig | None = None) -> dict:
    """The gate on a bare learner (the learning bench): its weights now against ``before`` (a
    ``Learner.snapshot`` from before the event), on ``checks``; the same decision as ``promotion_gate``.

    The caller restores ``before`` when the decision is "rejected", as the trainer reloads the live version.
    """
    config = config or GateConfig()
    started = time.perf_counter()
    checks = [c for c in checks if learner.prompt_tokens(c.messages) <= config.max_prompt_tokens]
    candidate = score(learner, "candidate", checks, [], config, {})
    with learner.weights(before["student"]):
        live = score(learner, "before", checks, [], config, {})
    return _decision("before", live, candidate, checks, 0, config, started)


class PromotionGate:
    """The Trainer's gate for one session: ``promotion_gate`` plus the answers each version already gave."""

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self.remembered: dict = {}

    def __call__(self, trainer: Trainer, version: str) -> dict:
        return promotion_gate(trainer, version, self.config, self.remembered)


def gate_for(settings: Settings) -> GateFn | None:
    """The Trainer's gate for these settings: None when ``gate`` is off."""
    if not settings.gate:
        return None
    return PromotionGate(GateConfig(threshold=settings.gate_threshold))
