"""The agent: the tool loop (model reply → at most one tool call → result), the tool-call text format,
the system prompt, feedback recording, file history for /undo, auto-commit."""
