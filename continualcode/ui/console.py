"""The display layer: model text, file contents and command output are data, never markup.

Everything the user sees passes through here. What a tool call will run must
look exactly like what runs: Rich markup in a model's text (`print(a[i])`
would lose `[i]`), emoji codes, terminal escape sequences (colour, cursor
movement, clearing the screen, window titles), carriage returns that
overwrite a line, and bidirectional-override characters that reorder it are
all shown literally. `SafeConsole` never interprets a string it prints, and
`plain()` wraps data in a `rich.text.Text` with its control characters made
visible; our own styling is built from `Text` objects with explicit styles.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"          # C0 (but \t \n) and C1 controls, DEL: ESC sequences, \r, bell
    "\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"  # zero-width, bidi embeddings/overrides/isolates
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control or direction-changing character written as an escape (`\\x1b`)."""
    return _INVISIBLE.sub(_escape, text)


def plain(text: str, style: str = "") -> Text:
    """Data for display: never parsed as markup, control characters visible."""
    return Text(visible(text), style=style)


class SafeConsole(Console):
    """A rich Console that prints strings literally: no markup, no emoji codes, no highlighting,
    control characters escaped (strings in tables and panels go through `render_str` too)."""

    def __init__(self, **kwargs) -> None:
        kwargs.update(markup=False, emoji=False, highlight=False)
        super().__init__(**kwargs)

    def render_str(self, text: str, **kwargs) -> Text:
        kwargs.update(markup=False, emoji=False, highlight=False)
        return super().render_str(visible(text), **kwargs)


def route_library_output(log_file: Path) -> None:
    """Send library warnings and progress of background work to `log_file`, never to the prompt line.

    The trainer thread loads its own copy of the model while the user types:
    transformers' "Loading weights" bars and FutureWarnings (peft, torch)
    would land in the middle of the prompt. Progress bars are turned off,
    Python warnings and library logging go to the file; /status says where.
    Call it before the engine loads and again after (transformers' own
    handler can only be redirected once it is imported); it is idempotent.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # also transformers' own bars (read at import)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    root = logging.getLogger()
    target = str(Path(log_file).resolve())
    ours = [h for h in root.handlers if getattr(h, "continualcode_log", False)]
    if not any(h.baseFilename == target for h in ours):
        for old in ours + [h for h in root.handlers if type(h) is logging.StreamHandler]:
            root.removeHandler(old)
            old.close()
        handler = logging.FileHandler(target, encoding="utf-8")
        handler.continualcode_log = True
        handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.disable_default_handler()
        transformers_logging.enable_propagation()
