"""Wiring: settings → engine, store, adapter registry, trainer, agent.

The REPL, the TUI and headless runs all open the same `Session`; they differ
only in the approver and the event sink they pass in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .adapters import AdapterRegistry
from .agent import Agent, AgentEvents, Approver
from .config import Settings, UsageError
from .engine import Engine, EngineError, SamplingParams
from .feedback import FeedbackRecorder
from .models import resolve
from .store import Store, StoreError
from .tool_calls import system_prompt
from .tools import ToolConfig, default_tools
from .workspace import Workspace


def make_engine(settings: Settings, repo: Path):
    """The engine the settings name, with the live adapter already loaded."""
    if settings.engine == "scripted":
        from .scripted_engine import ScriptedEngine

        if not settings.script:
            raise EngineError("--engine scripted needs --script FILE (a JSON list of replies)")
        return ScriptedEngine.from_file(settings.script)
    resolved = resolve(settings.model)
    if settings.engine == "vllm":
        from .vllm_engine import VLLMEngine

        return VLLMEngine.from_settings(resolved, settings)
    from .embedded_engine import EmbeddedEngine

    return EmbeddedEngine(resolved, dtype=settings.dtype)


def repo_summary(repo: Path, limit: int = 40) -> str:
    """A short listing of the repository for the system prompt (small models need context)."""
    names = []
    for path in sorted(repo.iterdir()):
        if path.name.startswith(".") or path.name in {"__pycache__", "node_modules"}:
            continue
        names.append(path.name + ("/" if path.is_dir() else ""))
    shown = names[:limit]
    more = f" … and {len(names) - limit} more" if len(names) > limit else ""
    return f"Repository {repo.name}: " + ", ".join(shown) + more


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
        live = self.registry.live()
        name = live.version if live else None
        if name != self.engine.adapter_version:
            self.engine.load_adapter(self.registry.path(name) if name else None, name)
        return name

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
        from .gate import gate_for
        from .trainer import Trainer

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

