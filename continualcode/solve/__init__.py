"""Test-time discovery for one task: attempts in a scratch copy until a check passes."""
