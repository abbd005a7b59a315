"""The system prompt: the tool-call format, the tools, and what the model should know of the repo."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

from continualcode.agent.tool_calls import ToolCall, render_tool_call
from continualcode.tools import Tool


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


def system_prompt(tools: Mapping[str, Tool] | Iterable[Tool], repo_summary: str, template: str | None = None) -> str:
    """The system prompt: the call format, one line and one example per tool, the repo summary.

    `template` replaces prompts/system.md (its {{tools}} and {{repo_summary}} are filled in).
    """
    tool_list = list(tools.values()) if isinstance(tools, Mapping) else list(tools)
    if template is None:
        template = resources.files("continualcode.agent").joinpath("prompts/system.md").read_text(encoding="utf-8")
    blocks = []
    for tool in tool_list:
        optional = [p.name for p in tool.params if not p.required]
        extra = f" Optional: {', '.join(optional)}." if optional else ""
        blocks.append(f"## {tool.name}\n{tool.description}{extra}\n{render_tool_call(ToolCall(tool.name, dict(tool.example)))}")
    return (template.replace("{{tools}}", "\n\n".join(blocks))
            .replace("{{repo_summary}}", repo_summary.strip() or "(no summary)").strip() + "\n")
