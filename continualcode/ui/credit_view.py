"""Drawing the credit view: a judged reply's tokens coloured by the self-teacher's advantage."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text

from continualcode.learning.credit import NEUTRAL_BAND, CreditView, TokenCredit
from continualcode.ui.console import visible

if TYPE_CHECKING:
    pass


STRONG = 1.0
"""|advantage| above this many nats (the teacher finds the token e times more or less likely) is bold."""


def advantage_style(advantage: float, band: float = NEUTRAL_BAND) -> str:
    """Red where the teacher disagrees, blue where it reinforces, plain inside the neutral band."""
    if abs(advantage) < band:
        return ""
    strong = abs(advantage) >= STRONG
    if advantage < 0:
        return "bold white on red3" if strong else "black on light_pink1"
    return "bold white on blue3" if strong else "black on light_sky_blue1"


def credit_text(view: CreditView, band: float = NEUTRAL_BAND, selected: int | None = None,
                click_action: str | None = None) -> Text:
    """The reply with each token coloured by its advantage; `selected` is shown reversed.

    `click_action` (a Textual action such as "screen.select_token") makes each token clickable.
    """
    text = Text()
    for token in view.tokens:
        piece = visible(token.text)
        style = advantage_style(token.advantage, band)
        if token.position == selected:
            style = (style + " reverse").strip()
            piece = piece or "▏"
        if style and piece.endswith("\n"):
            piece = piece[:-1] + "↵\n"  # a coloured newline would be invisible
        if click_action:
            style = Style.parse(style or "none") + Style(meta={"@click": f"{click_action}({token.position})"})
        text.append(piece, style)
    return text


def legend(view: CreditView, band: float = NEUTRAL_BAND) -> Text:
    return Text.assemble((" teacher disagrees ", advantage_style(-STRONG)), " ", (" weakly ", advantage_style(-band)),
                         f"  plain: |A| < {band:.2f} nat  ", (" weakly ", advantage_style(band)), " ",
                         (" teacher reinforces ", advantage_style(STRONG)),
                         f"   mean A {view.mean_advantage:+.3f} over {len(view.tokens)} tokens")


def header(view: CreditView) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_row("reply", f"message {view.message_id} · example {view.example_id} · {view.template} template"
                  + ("" if view.trained_on else " · no signal: masked out of training"))
    if view.feedback:
        table.add_row("feedback", _short(view.feedback, 300))
    if view.solution:
        table.add_row("solution", _short(view.solution, 300))
    table.add_row("student", view.student)
    table.add_row("teacher", view.teacher)
    return table


def alternatives_table(token: TokenCredit) -> Table:
    table = Table("teacher's next token", "p", title=f"position {token.position}: {token.text!r}  "
                  f"A {token.advantage:+.3f} (teacher {math.exp(token.teacher_logprob):.3f}, "
                  f"student {math.exp(token.student_logprob):.3f})", title_justify="left")
    for alt in token.teacher_top:
        mark = " ◀ y" if alt.id == token.id else ""
        table.add_row(repr(alt.text) + mark, f"{alt.prob:.3f}")
    return table


def render_credit(view: CreditView, band: float = NEUTRAL_BAND, worst: int = 5) -> Group:
    """The whole view for a console: header, coloured reply, legend, the strongest disagreements."""
    parts: list[Any] = [header(view), Text(), credit_text(view, band), Text(), legend(view, band)]
    disagreements = sorted((t for t in view.tokens if t.advantage <= -band), key=lambda t: t.advantage)[:worst]
    if disagreements:
        table = Table("pos", "token", "A", "teacher would rather write", title="where the teacher disagrees most",
                      title_justify="left")
        for token in disagreements:
            alts = ", ".join(f"{a.text!r} {a.prob:.2f}" for a in token.teacher_top[:3])
            table.add_row(str(token.position), repr(token.text), f"{token.advantage:+.2f}", alts)
        parts += [Text(), table]
    return Group(*parts)


def _short(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
