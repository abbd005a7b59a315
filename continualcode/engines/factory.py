"""Choosing an engine from the settings, and serving a stored adapter version on it.

`serve_version` is the one way anything (the session before each request, the
trainer after a promotion, a rollback, `solve`, the probes of `adapters diff`)
puts an adapter version from the registry onto an engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from continualcode.engines.base import Engine, EngineError
from continualcode.models import resolve

if TYPE_CHECKING:
    from continualcode.adapters.registry import AdapterRegistry
    from continualcode.config import Settings


def make_engine(settings: Settings, repo: Path | None = None) -> Engine:
    """The engine the settings name (serving the base model; see `serve_live`)."""
    if settings.engine == "scripted":
        from continualcode.engines.scripted import ScriptedEngine

        if not settings.script:
            raise EngineError("--engine scripted needs --script FILE (a JSON list of replies)")
        return ScriptedEngine.from_file(settings.script)
    resolved = resolve(settings.model)
    if settings.engine == "vllm":
        from continualcode.engines.vllm import VLLMEngine

        return VLLMEngine.from_settings(resolved, settings)
    from continualcode.engines.embedded import EmbeddedEngine

    return EmbeddedEngine(resolved, dtype=settings.dtype)


def serve_version(engine: Engine, registry: AdapterRegistry | None, version: str | None) -> float:
    """Make `version` (None = the base model) the engine's serving adapter; seconds the swap took.

    Nothing happens when the engine already serves it.
    """
    if engine.adapter_version == version:
        return 0.0
    if version is not None and registry is None:
        raise EngineError(f"cannot serve {version}: no adapter registry")
    return engine.load_adapter(registry.path(version) if version is not None else None, version)


def serve_live(engine: Engine, registry: AdapterRegistry) -> str | None:
    """Serve whatever the registry's LIVE names now (another process may have rolled back)."""
    live = registry.live()
    name = live.version if live else None
    serve_version(engine, registry, name)
    return name
