"""The coding tools the model can call, and the one protocol they share.

A tool is a small object with a name, a one-line description the model sees, a
parameter list (what the call format accepts), one example call for the system
prompt, whether it needs the user's approval, and three methods:

- `check(args, ws)`: the refusals that happen *before* any approval prompt
  (bad arguments, a path outside the repo); returns an error result or None.
- `preview(args, ws)`: what the approval prompt shows (a diff, the command).
- `run(args, ws)`: does the work and returns a `ToolResult`; never raises for
  anything the model can fix (missing file, no match, non-zero exit) because
  those results go back to the model, and become training feedback.

Every path goes through `Workspace.resolve`, so no tool reads or writes outside
the repository, under .git/, or (for writes) into .continualcode/.
"""

from __future__ import annotations

from continualcode.tools.base import (
    ERROR_KINDS,
    BaseTool,
    Param,
    Tool,
    ToolArgError,
    ToolResult,
)
from continualcode.tools.config import ToolConfig
from continualcode.tools.files import EditTool, ReadFileTool, WriteFileTool
from continualcode.tools.search import GrepTool, ListFilesTool
from continualcode.tools.shell import BashTool, RunTestsTool, filtered_env


def default_tools(config: object | None = None) -> dict[str, Tool]:
    """The standard tool set, configured (timeouts, output caps, test command, env allow-list).

    `config` is a ToolConfig, or any settings object (the agent's Config) whose
    attributes named like ToolConfig fields override the defaults.
    """
    config = ToolConfig.from_settings(config)
    tools: list[Tool] = [
        ReadFileTool(config),
        WriteFileTool(config),
        EditTool(config),
        ListFilesTool(config),
        GrepTool(config),
        BashTool(config),
        RunTestsTool(config),
    ]
    return {tool.name: tool for tool in tools}


TOOLS: dict[str, Tool] = default_tools()
"""The tools with default settings; agents with a config call `default_tools(config)`."""

__all__ = [
    "ERROR_KINDS", "TOOLS", "BaseTool", "BashTool", "EditTool", "GrepTool", "ListFilesTool", "Param",
    "ReadFileTool", "RunTestsTool", "Tool", "ToolArgError", "ToolConfig", "ToolResult", "WriteFileTool",
    "default_tools", "filtered_env",
]
