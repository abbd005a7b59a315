"""Wiring: settings → engine, store, adapter registry, trainer, agent.

The REPL, the TUI and headless runs all open the same `Session`; they differ
only in the approver and the event sink they pass in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from continualcode.adapters.registry import AdapterRegistry
from continualcode.agent.feedback import FeedbackRecorder
from continualcode.agent.loop import Agent, AgentEvents, Approver
from continualcode.agent.repair import RepairConfig, Repairer
from continualcode.agent.system_prompt import (
    project_instructions,
    repo_summary,
    system_prompt,
)
from continualcode.config import ConfigError, Settings, UsageError
from continualcode.engines.base import Engine, SamplingParams
from continualcode.engines.factory import make_engine, serve_live
from continualcode.learning.types import template_for_kind
from continualcode.models import resolve
from continualcode.store.db import Store, StoreError
from continualcode.tools import ToolConfig, default_tools
from continualcode.tools.workspace import Workspace


@dataclass
class Session:
    repo: Path
    settings: Settings
    engine: Engine
    store: Store
    registry: AdapterRegistry
    agent: Agent
    trainer: object | None
    session_id: int
    notes: list[str] = field(default_factory=list)
    """What /status should say besides the numbers: project instruction files read or ignored,
    repo config keys not trusted."""
    owns_engine: bool = True
    owns_trainer: bool = True

    def sync_live(self) -> str | None:
        """Serve whatever LIVE names now (another process may have rolled back); cheap when unchanged."""
        return serve_live(self.engine, self.registry)

    def close(self) -> None:
        try:
            if self.trainer is not None and self.owns_trainer:
                self.trainer.stop()
            self.store.end_session(self.session_id)
        finally:  # a store that broke mid-run must not leave a vLLM server behind
            if self.owns_engine:
                self.engine.close()


def make_trainer(store: Store, registry: AdapterRegistry, settings: Settings, engine: Engine):
    """The background trainer the settings ask for (imports torch: only when learning is on)."""
    from continualcode.adapters.presets import preset_for
    from continualcode.learning.gate import gate_for
    from continualcode.learning.recipe import LearnRecipe
    from continualcode.learning.trainer import Trainer
    from continualcode.learning.types import SDPOConfig

    resolved = resolve(settings.model)
    preset = preset_for(resolved.name)
    steps = settings.steps_per_feedback or preset.steps_per_feedback
    try:
        config = SDPOConfig(learning_rate=settings.learning_rate or preset.learning_rate,
                            alpha=_or(settings.divergence_alpha, preset.divergence_alpha),
                            support=_or(settings.divergence_support, preset.divergence_support),
                            replay_weight=settings.learn_replay_weight)
        recipe = LearnRecipe(steps=steps, rounds=settings.learn_rounds, rollouts=settings.learn_rollouts,
                             expand=settings.learn_expand,
                             teacher_samples=_or(settings.learn_teacher_samples, preset.learn_teacher_samples),
                             replay=_or(settings.learn_replay, preset.learn_replay))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"learning settings: {exc}") from exc
    return Trainer(store, registry, resolved, engine=engine, dtype=settings.dtype, preset=preset, config=config,
                   steps_per_feedback=steps, recipe=recipe, gate=gate_for(settings))


def _or(setting, preset_value):
    """A learning setting when it is set, else the model's preset (adapters/presets.toml)."""
    return preset_value if setting is None else setting


def open_session(repo: Path, settings: Settings, approver: Approver, events: AgentEvents | None = None,
                 *, resume: str | None = None, engine: Engine | None = None, start_trainer: bool = True,
                 trainer=None, check: str | None = None) -> Session:
    """Everything a request needs. `engine` and `trainer` may be shared across sessions (the agent
    benchmark keeps one of each loaded); the session then does not close them. `check` is the
    command the repair flow makes pass (default: the test command, configured or detected)."""
    repo = Path(repo).resolve()
    store = Store.for_repo(repo)
    registry = AdapterRegistry.for_repo(repo)
    owns_engine, owns_trainer = engine is None, trainer is None
    try:  # before anything starts
        template_for_kind("followup", settings.followup_template)
    except ValueError as exc:
        raise ConfigError(f"learning settings: {exc}") from exc
    engine = engine or make_engine(settings, repo)
    try:
        session_id = _session_id(store, repo, settings, resume)
    except BaseException:  # a locked store: the engine this call started must not outlive it
        if owns_engine:
            engine.close()
        raise
    if trainer is None and settings.learn and settings.engine != "scripted":
        trainer = make_trainer(store, registry, settings, engine)
        if start_trainer:
            trainer.start()
    recorder = FeedbackRecorder(store, learn=settings.learn, on_example=trainer.wake if trainer else None,
                                followup_template=settings.followup_template, learn_repair=settings.learn_repair)
    tools = default_tools(ToolConfig(bash_timeout=settings.bash_timeout, test_command=settings.test_command,
                                     env_allow=tuple(settings.env_allow)))
    instructions = project_instructions(repo)
    repairer = None
    if settings.repair:
        try:
            repairer = Repairer(RepairConfig(candidates=settings.repair_candidates, rounds=settings.repair_rounds,
                                             rewrites=settings.repair_rewrites, base_rounds=settings.repair_base_rounds,
                                             edit_format=settings.edit_format, prefix=settings.repair_prefix),
                                 check=check)
        except ValueError as exc:
            raise ConfigError(f"repair settings: {exc}") from exc
    agent = Agent(
        engine, store, session_id, Workspace(repo), tools, approver, recorder,
        system_prompt=system_prompt(tools, repo_summary(repo), repo=repo, instructions=instructions.text),
        events=events,
        sampling=SamplingParams(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                seed=settings.seed),
        max_turns=settings.max_turns, auto_commit=settings.auto_commit, repairer=repairer,
    )
    notes = list(instructions.notes)
    if instructions.sources:
        notes.insert(0, f"project instructions from {', '.join(instructions.sources)} are in the system prompt")
    if settings.ignored_repo_keys:
        notes.append(f"ignored in the untrusted repo config: {', '.join(settings.ignored_repo_keys)} "
                     "(`continualcode trust`)")
    session = Session(repo, settings, engine, store, registry, agent, trainer, session_id, notes,
                      owns_engine=owns_engine, owns_trainer=owns_trainer)
    session.sync_live()
    return session


def _session_id(store: Store, repo: Path, settings: Settings, resume: str | None) -> int:
    if resume is None:
        return store.start_session(repo_root=str(repo), model=settings.model, engine=settings.engine)
    if resume != "latest" and not resume.isdigit():
        raise UsageError(f"--resume takes a session id (a number), got {resume!r}")
    try:
        return store.resume_session(None if resume == "latest" else int(resume))["id"]
    except StoreError as exc:
        raise UsageError(str(exc)) from exc
