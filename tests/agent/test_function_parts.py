"""A function's head apart from its body (continualcode.agent.function_parts)."""

from __future__ import annotations

import ast

from continualcode.agent.function_parts import (
    function_parts,
    head_prefix,
    without_function,
)

MODULE = '''"""Module."""

import math


def area(radius: float) -> float:
    """The area of a circle.

    >>> round(area(1.0), 2)
    3.14
    """
    return math.pi * radius + radius


class Shape:
    @staticmethod
    def scale(
        value: float,
        factor: float = 2.0,
    ) -> float:
        # a comment before the body
        return value * factor

    def name(self): return "shape"
'''


def test_a_documented_function_s_head_is_its_signature_and_docstring():
    parts = function_parts(MODULE, "shapes.py", "area")
    assert parts.head.startswith("def area(radius: float) -> float:\n    \"\"\"The area")
    assert parts.head.endswith('    """') and parts.docstring_lines == 5 and parts.has_body
    assert parts.head_lines == (6, 11) and parts.end == 12
    # the forced start of a candidate ends after the newline the tokenizer joins to the closing quotes
    assert head_prefix(parts) == f"```python\n{parts.head}\n"


def test_a_method_s_head_is_dedented_with_its_decorator_and_a_split_signature():
    parts = function_parts(MODULE, "shapes.py", "scale")
    assert parts.head.splitlines()[0] == "@staticmethod"
    assert parts.head.splitlines()[-1] == "    # a comment before the body"  # all before the first statement
    assert parts.docstring_lines == 0 and parts.has_body
    ast.parse(parts.head + "\n    return value\n")  # the head and a body a candidate writes: valid Python


def test_no_parts_for_a_one_line_def_an_unknown_or_repeated_name_or_broken_code():
    assert function_parts(MODULE, "shapes.py", "name") is None
    assert function_parts(MODULE, "shapes.py", "missing") is None
    assert function_parts("def f():\n    return 1\n\ndef f():\n    return 2\n", "f.py", "f") is None
    assert function_parts("def f(:\n", "f.py", "f") is None


def test_a_rewrite_sees_the_file_without_the_function():
    parts = function_parts(MODULE, "shapes.py", "area")
    shown = without_function(MODULE, parts)
    assert "def area" not in shown and "math.pi" not in shown and "The area of a circle" not in shown
    assert "import math" in shown and "class Shape" in shown and shown.endswith("\n")
    ast.parse(shown)
