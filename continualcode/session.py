"""Wiring: settings → engine, store, adapter registry, trainer, agent.

The REPL, the TUI and headless runs all open the same `Session`; they differ
only in the approver and the event sink they pass in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from continualcode.adapters.registry import AdapterRegistry
from continualcode.agent.feedback import FeedbackRecorder
from continualcode.agent.loop import Agent, AgentEvents, Approver
from continualcode.agent.system_prompt import repo_summary, system_prompt
from continualcode.config import Settings, UsageError
from continualcode.engines.base import Engine, SamplingParams
from continualcode.engines.factory import make_engine, serve_live
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

    def sync_live(self) -> str | None:
        """Serve whatever LIVE names now (another process may have rolled back); cheap when unchanged."""
        return serve_live(self.engine, self.registry)

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.stop()
        self.store.end_session(self.session_id)
        self.engine.close()


def open_session(repo: Path, settings: Settings, approver: Approver, events: AgentEvents | None = None,
                 *, resume: str | None = None, engine: Engine | None = None, start_trainer: bool = True) -> Session:
    repo = Path(repo).resolve()
    store = Store.for_repo(repo)
    registry = AdapterRegistry.for_repo(repo)
    engine = engine or make_engine(settings, repo)
    session_id = _session_id(store, repo, settings, resume)
    trainer = None
    if settings.learn and settings.engine != "scripted":
        from continualcode.learning.gate import gate_for
        from continualcode.learning.trainer import Trainer

        trainer = Trainer(store, registry, resolve(settings.model), engine=engine, dtype=settings.dtype,
                          steps_per_feedback=settings.steps_per_feedback, gate=gate_for(settings))
        if settings.learning_rate is not None:
            trainer.config.learning_rate = settings.learning_rate
        if start_trainer:
            trainer.start()
    recorder = FeedbackRecorder(store, learn=settings.learn, on_example=trainer.wake if trainer else None)
    tools = default_tools(ToolConfig(bash_timeout=settings.bash_timeout, test_command=settings.test_command,
                                     env_allow=tuple(settings.env_allow)))
    workspace = Workspace(repo)
    agent = Agent(
        engine, store, session_id, workspace, tools, approver, recorder,
        system_prompt=system_prompt(tools, repo_summary(repo)), events=events,
        sampling=SamplingParams(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature),
        max_turns=settings.max_turns, auto_commit=settings.auto_commit,
    )
    session = Session(repo, settings, engine, store, registry, agent, trainer, session_id)
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
