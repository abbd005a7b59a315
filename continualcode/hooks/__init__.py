"""The git pre-commit hook: checks on the staged tree, learning from their result, install/uninstall."""
