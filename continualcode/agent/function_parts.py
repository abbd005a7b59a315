"""A function's head (decorators, signature, docstring) apart from its body.

Two uses in the repair flow (continualcode.agent.repair), both measured on the
public agent benchmark (docs/agent.md):

- a candidate of the `function` form may start with the head already written
  (its forced prefix), so the model spends its tokens on the body instead of
  copying a long docstring back;
- a *rewrite* candidate is not shown the function's body: its reply starts
  with the head, and the docstring and the failing tests are its
  specification. Shown the buggy body, the bundled model mostly copies it
  back unchanged.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass

LONG_DOCSTRING_LINES = 4
"""A docstring this long (or longer) is given as part of a fix candidate's prefix rather than re-written."""


@dataclass(frozen=True)
class FunctionParts:
    path: str
    name: str
    head: str
    """Decorators, signature and docstring, dedented to column 0 (no trailing newline)."""
    head_lines: tuple[int, int]
    """First and last line (1-based) of the head in the file."""
    end: int
    """The function's last line in the file."""
    docstring_lines: int

    @property
    def has_body(self) -> bool:
        """Is there code after the head (a function that is only a docstring has none to hide)?"""
        return self.end > self.head_lines[1]


def function_parts(text: str, path: str, name: str) -> FunctionParts | None:
    """The parts of the one function or method `name` in `text`; None when there is not exactly one."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]
    if len(nodes) != 1:
        return None
    node = nodes[0]
    lines = text.splitlines()
    start = def_start(node)
    first = node.body[0]
    documented = ast.get_docstring(node, clean=False) is not None
    if documented:
        head_end = first.end_lineno
    elif first.lineno > node.lineno:  # the signature: up to the line before the first statement
        head_end = first.lineno - 1
    else:
        return None  # `def f(): return 1`: no head to keep apart
    head = textwrap.dedent("\n".join(lines[start - 1:head_end]))
    return FunctionParts(path=path, name=name, head=head.rstrip(), head_lines=(start, head_end),
                         end=node.end_lineno, docstring_lines=(first.end_lineno - first.lineno + 1) if documented else 0)


def def_start(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The first line of a function's source: its first decorator, else its `def`."""
    return min([d.lineno for d in node.decorator_list] + [node.lineno])


def without_function(text: str, parts: FunctionParts) -> str:
    """`text` with the function left out: what a rewrite candidate is shown of its file (its reply starts
    with the head). Shown the head alone, the bundled model copied it back without a body (measured)."""
    lines = text.splitlines()
    return "\n".join(lines[:parts.head_lines[0] - 1] + lines[parts.end:]) + ("\n" if text.endswith("\n") else "")


def head_prefix(parts: FunctionParts) -> str:
    """A candidate's forced start: the fence and the head, through the newline that ends its docstring (or
    signature). Not before it: the tokenizer joins a docstring's closing quotes or `:` with the newline after it, so a
    prefix cut between them is a token boundary the model never saw (measured: it then wrote no body)."""
    return f"```python\n{parts.head}\n"
