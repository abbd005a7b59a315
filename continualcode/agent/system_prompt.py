"""The system prompt: the tool-call format, the tools, what the model should know of the repo, and the
project's own instructions (AGENTS.md, CONVENTIONS.md) as Codex and Claude Code users expect.

Examples use placeholders and the repository's own file names, never code: a
small model copies an example's code as if it were the user's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from continualcode.agent.tool_calls import example_call, render_tool_call
from continualcode.tools import Tool

INSTRUCTION_FILES = ("AGENTS.md", "CONVENTIONS.md")
"""Read from the repository root into the system prompt, in this order."""
INSTRUCTIONS_MAX_CHARS = 8000
"""Per file: the head is kept (a 0.5B model's context is short; the rest is noted as cut)."""
SKIP = {"__pycache__", "node_modules"}


@dataclass
class ProjectInstructions:
    """What AGENTS.md / CONVENTIONS.md said, and notes for /status about the ones that could not be read."""

    text: str = ""
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def project_instructions(repo: Path) -> ProjectInstructions:
    found = ProjectInstructions()
    parts = []
    for name in INSTRUCTION_FILES:
        path = Path(repo) / name
        if not path.exists():
            continue
        try:
            if not path.is_file():
                raise OSError("not a regular file")
            with open(path, "rb") as handle:  # a huge or special file must not hang or flood
                data = handle.read(INSTRUCTIONS_MAX_CHARS * 4 + 1)
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            found.notes.append(f"{name} ignored: {exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc}")
            continue
        if len(text) > INSTRUCTIONS_MAX_CHARS:
            found.notes.append(f"{name}: only its first {INSTRUCTIONS_MAX_CHARS} characters are used")
            text = text[:INSTRUCTIONS_MAX_CHARS] + "\n[... cut ...]"
        if text.strip():
            parts.append(f"From {name}:\n{text.strip()}")
            found.sources.append(name)
    found.text = "\n\n".join(parts)
    return found


def repo_files(repo: Path, limit: int = 40) -> list[str]:
    names = []
    for path in sorted(Path(repo).iterdir()):
        if path.name.startswith(".") or path.name in SKIP:
            continue
        names.append(path.name + ("/" if path.is_dir() else ""))
    return names[:limit + 1]


def repo_summary(repo: Path, limit: int = 40) -> str:
    """A short listing of the repository for the system prompt (small models need context)."""
    names = repo_files(repo, limit)
    more = " … and more" if len(names) > limit else ""
    return f"Repository {Path(repo).name}: " + ", ".join(names[:limit]) + more


def example_file(repo: Path | None) -> str:
    """A real file to use in examples: a code file of the repo (not a test), else a placeholder."""
    if repo is not None:
        names = [n for n in repo_files(repo) if not n.endswith("/")]
        for name in names:
            if name.endswith(".py") and not name.startswith("test"):
                return name
        if names:
            return names[0]
    return "PATH/TO/FILE"


def system_prompt(tools: Mapping[str, Tool] | Iterable[Tool], repo_summary: str, template: str | None = None, *,
                  repo: Path | None = None, instructions: str = "") -> str:
    """The system prompt: the call format, one line and one placeholder example per tool, the repo summary,
    the project's instructions.

    `template` replaces prompts/system.md (its {{tools}}, {{repo_summary}} and {{example_file}} are filled in).
    """
    tool_list = list(tools.values()) if isinstance(tools, Mapping) else list(tools)
    if template is None:
        template = resources.files("continualcode.agent").joinpath("prompts/system.md").read_text(encoding="utf-8")
    sample = example_file(repo)
    blocks = []
    for tool in tool_list:
        optional = [p.name for p in tool.params if not p.required]
        extra = f" Optional: {', '.join(optional)}." if optional else ""
        blocks.append(f"## {tool.name}\n{tool.description}{extra}\n{render_tool_call(example_call(tool, sample))}")
    text = (template.replace("{{tools}}", "\n\n".join(blocks)).replace("{{example_file}}", sample)
            .replace("{{repo_summary}}", repo_summary.strip() or "(no summary)").strip())
    if instructions.strip():
        text += "\n\nThe project's instructions for agents (follow them):\n\n" + instructions.strip()
    return text + "\n"
