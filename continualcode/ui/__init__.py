"""The faces of a session: the REPL, the Textual TUI, headless runs, slash commands and the views they draw."""
