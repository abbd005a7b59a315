"""The tool-call text format: parsing (strict where ambiguous), rendering, round trips, the prompt."""

from __future__ import annotations

import random
import re

import pytest

from continualcode.agent.system_prompt import system_prompt
from continualcode.agent.tool_calls import (
    STOP_STRINGS,
    ParsedTurn,
    ToolCall,
    example_call,
    parse_tool_call,
    render_call_error,
    render_tool_call,
    render_tool_result,
)
from continualcode.tools import TOOLS, ToolResult

EDIT = '''I'll fix the sign.
<tool name="edit">
<arg name="path">src/calc.py</arg>
<arg name="search">
def add(a, b):
    return a - b
</arg>
<arg name="replace">
def add(a, b):

    return a + b
</arg>
</tool>'''


def test_parses_prose_and_a_multiline_call():
    turn = parse_tool_call(EDIT)
    assert turn.error is None
    assert turn.prose == "I'll fix the sign."
    assert turn.call == ToolCall("edit", {
        "path": "src/calc.py",
        "search": "def add(a, b):\n    return a - b",
        "replace": "def add(a, b):\n\n    return a + b",
    }, EDIT[EDIT.index("<tool"):])


def test_only_one_newline_is_trimmed_at_each_end_of_a_value():
    text = '<tool name="write_file">\n<arg name="path">a.py</arg>\n<arg name="content">\n\n  x = 1\n\n</arg>\n</tool>'
    assert parse_tool_call(text).call.args["content"] == "\n  x = 1\n"


def test_a_plain_answer_has_no_call_and_no_error():
    turn = parse_tool_call("The add function is fixed; all tests pass.\n")
    assert turn == ParsedTurn("The add function is fixed; all tests pass.", None, None)


def test_missing_final_close_tag_is_accepted_when_the_stop_string_was_cut():
    text = EDIT.removesuffix("</tool>")
    turn = parse_tool_call(text)
    assert turn.error is None and turn.call.args["path"] == "src/calc.py"


def test_text_after_the_call_is_ignored():
    turn = parse_tool_call('<tool name="read_file"><arg name="path">a.py</arg></tool>\nand then <tool name="bash">')
    assert turn.call == ToolCall("read_file", {"path": "a.py"}, '<tool name="read_file"><arg name="path">a.py</arg></tool>')


def test_a_fenced_call_is_accepted_and_the_fence_is_not_prose():
    text = "Reading it.\n```xml\n<tool name=\"read_file\">\n<arg name=\"path\">a.py</arg>\n</tool>\n```"
    turn = parse_tool_call(text)
    assert turn.prose == "Reading it." and turn.call.args == {"path": "a.py"}


@pytest.mark.parametrize("opening", ["<tool name='read_file'>", "<tool name=read_file>", '<TOOL NAME="Read_File">',
                                     '<tool name="read-file">', '<tool  name = "read_file" >'])
def test_quote_style_and_name_case_are_lenient(opening):
    turn = parse_tool_call(f'{opening}\n<arg name="path">a.py</arg>\n</tool>')
    assert turn.error is None and turn.call.name == "read_file" and turn.call.args == {"path": "a.py"}


def test_a_tool_without_arguments_may_self_close():
    assert parse_tool_call('Running.\n<tool name="run_tests"/>').call == ToolCall("run_tests", {}, '<tool name="run_tests"/>')
    assert parse_tool_call('<tool name="run_tests"></tool>').call.args == {}


def test_a_bare_value_fills_the_only_required_argument():
    assert parse_tool_call('<tool name="read_file">src/app.py</tool>').call.args == {"path": "src/app.py"}
    assert parse_tool_call('<tool name="bash">\nls -la\n</tool>').call.args == {"command": "ls -la"}
    assert parse_tool_call('<tool name="edit">src/app.py</tool>').error is not None  # three required: ambiguous


def _error(text: str) -> str:
    turn = parse_tool_call(text)
    assert turn.call is None and turn.error is not None, turn
    assert turn.error.startswith("Your tool call could not be run: ")
    return turn.error


def test_unknown_tool_names_the_closest_tool_and_lists_all():
    error = _error('<tool name="read">\n<arg name="path">a.py</arg>\n</tool>')
    assert "no tool named 'read'" in error and "Did you mean read_file?" in error
    assert '<tool name="read_file">' in error  # the correct form, with an example


def test_unknown_tool_without_a_close_name_lists_the_tools():
    error = _error('<tool name="deploy_to_prod"></tool>')
    assert "The tools are: read_file, write_file, edit, list_files, grep, bash, run_tests." in error


def test_missing_required_argument_shows_the_correct_form():
    error = _error('<tool name="edit">\n<arg name="path">a.py</arg>\n<arg name="search">x</arg>\n</tool>')
    assert "edit needs the argument 'replace'" in error
    assert parse_tool_call(error[error.index("<tool"):]).call.name == "edit"  # the shown form parses


def test_unknown_argument_is_named_with_the_valid_ones():
    error = _error('<tool name="read_file">\n<arg name="file">a.py</arg>\n</tool>')
    assert "read_file has no argument 'file'" in error and "path, start_line, end_line" in error


@pytest.mark.parametrize("text, where", [
    ('<tool name="edit">\n<arg name="path">a.py\n<arg name="search">x</arg>\n<arg name="replace">y</arg>\n</tool>',
     "not closed before the next <arg>"),
    ('<tool name="read_file">\n<arg name="path">a.py\n</tool>', "not closed before </tool>"),
    ('<tool name="read_file">\n<arg name="path">a.py', "not closed;"),
])
def test_unclosed_argument_is_an_error(text, where):
    assert where in _error(text)


def test_duplicate_argument_and_stray_text_are_errors():
    assert "given twice" in _error('<tool name="read_file"><arg name="path">a</arg><arg name="path">b</arg></tool>')
    error = _error('<tool name="run_tests">Test suite passed.</tool>')
    assert "text outside any <arg> tag: 'Test suite passed.'" in error
    assert "<arg> tag has no name" in _error('<tool name="read_file"><arg>a.py</arg></tool>')
    assert "<tool> tag has no name" in _error("<tool>\n<arg name=\"path\">a</arg>\n</tool>")


def test_other_call_formats_get_an_error_pointing_to_ours():
    error = parse_tool_call('<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>').error
    assert error is not None and "not <tool_call> or JSON" in error
    error = parse_tool_call('<arg name="path">a.py</arg>').error
    assert error is not None and "inside a <tool" in error


def test_custom_tool_maps_are_respected():
    only_read = {"read_file": TOOLS["read_file"]}
    assert parse_tool_call('<tool name="bash"><arg name="command">ls</arg></tool>', only_read).error is not None


# --- rendering ------------------------------------------------------------------

def test_render_is_canonical_and_ends_with_the_stop_string():
    call = ToolCall("edit", {"path": "a.py", "search": "x = 1\ny = 2", "replace": "x = 3"})
    text = render_tool_call(call)
    assert text == ('<tool name="edit">\n<arg name="path">a.py</arg>\n<arg name="search">\nx = 1\ny = 2\n</arg>\n'
                    '<arg name="replace">x = 3</arg>\n</tool>')
    assert text.endswith(STOP_STRINGS)


def test_render_refuses_values_the_format_cannot_carry():
    with pytest.raises(ValueError, match="cannot carry"):
        render_tool_call(ToolCall("write_file", {"path": "a.xml", "content": "<x></arg></x>"}))


ALPHABET = ["\n", "\n\n", "<arg", "</tool", "</arg", " ", "\t", "x", "é", "<", ">", "</", "<tool", '"', "'", "{", "}", "\\n", "def f():", "    ", "=", "/", "`"]


def _random_value(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))


def test_render_then_parse_round_trips_on_generated_calls():
    rng = random.Random(7)
    checked = 0
    for _ in range(500):
        tool = rng.choice(list(TOOLS.values()))
        args = {p.name: _random_value(rng) for p in tool.params if p.required or rng.random() < 0.5}
        call = ToolCall(tool.name, args)
        try:
            text = render_tool_call(call)
        except ValueError:
            continue
        prose = rng.choice(["", "I'll do it.", "Line one.\nLine two."])
        turn = parse_tool_call(f"{prose}\n{text}" if prose else text)
        assert turn.error is None, (call, turn.error)
        assert (turn.call.name, turn.call.args) == (call.name, call.args)
        assert turn.prose == prose
        checked += 1
    assert checked > 400


def test_render_tool_result():
    result = ToolResult(False, "boom", exit_code=2, error_kind="exit_code")
    assert render_tool_result("bash", result) == '<result tool="bash" ok="false" exit_code="2" error="exit_code">\nboom\n</result>'
    assert render_tool_result("write_file", ToolResult(True, "")) == '<result tool="write_file" ok="true">\n(no output)\n</result>'
    assert render_call_error("Your tool call could not be run: x.").startswith('<result ok="false" error="malformed_call">')


# --- the system prompt ----------------------------------------------------------

def test_system_prompt_teaches_every_tool_with_a_parsable_example():
    prompt = system_prompt(TOOLS, "A tiny calculator library.")
    assert "A tiny calculator library." in prompt and "{{" not in prompt
    examples = re.findall(r"<tool name=\"(\w+)\">.*?</tool>", prompt, flags=re.S)
    for name, tool in TOOLS.items():
        assert tool.description in prompt
        block = re.search(rf'<tool name="{name}">.*?</tool>', prompt, flags=re.S)
        assert block is not None, name
        turn = parse_tool_call(block.group(0))
        assert turn.error is None and turn.call.name == name and turn.call.args == example_call(tool).args
    assert set(TOOLS) <= set(examples)
    assert len(prompt) < 4500  # a 0.5B model's attention is short; keep the prompt small


def test_system_prompt_allows_a_plain_answer_and_shows_one():
    """With one example, a read_file call, Qwen answered "What is the capital of France?" in an empty repo
    with that call (15 of 18 general questions, greedy); the prompt now shows a plain answer too."""
    prompt = system_prompt(TOOLS, "Repository project: (no files yet)")
    examples = prompt.split("Examples:", 1)[1]
    replies = [turn.split("\n\n", 1)[0] for turn in examples.split("Assistant: ")[1:]]
    turns = [parse_tool_call(reply) for reply in replies]
    assert any(t.call is not None for t in turns), "an example with a tool call"
    assert any(t.call is None and t.error is None and t.prose for t in turns), "an example answered in plain text"


def test_examples_are_placeholders_or_the_repos_own_files_never_code(tmp_path):
    """Issue 16: the model edited `def total(prices)`, the edit tool's example, in a repo without it."""
    (tmp_path / "inventory.py").write_text("STOCK = {}\n")
    (tmp_path / "test_inventory.py").write_text("")
    prompt = system_prompt(TOOLS, "Repository r: inventory.py, test_inventory.py", repo=tmp_path)
    assert "def " not in prompt and "return " not in prompt and "total(prices)" not in prompt
    assert '<arg name="path">inventory.py</arg>' in prompt  # the repo's own code file, not a test
    for tool in TOOLS.values():
        for value in example_call(tool, "inventory.py").args.values():
            assert value == "inventory.py" or value.startswith("(") or value in ("*.py", "PATH/TO/FILE"), value


def test_agents_md_reaches_the_system_prompt_and_a_bad_one_is_a_note(tmp_path):
    from continualcode.agent.system_prompt import project_instructions

    (tmp_path / "AGENTS.md").write_text("Run `make check` before you answer.\n")
    (tmp_path / "CONVENTIONS.md").write_bytes(b"\xff\xfe not utf-8")
    found = project_instructions(tmp_path)
    assert found.sources == ["AGENTS.md"] and "CONVENTIONS.md ignored" in found.notes[0]
    prompt = system_prompt(TOOLS, "r", repo=tmp_path, instructions=found.text)
    assert "Run `make check` before you answer." in prompt and "From AGENTS.md" in prompt
    (tmp_path / "AGENTS.md").unlink()
    (tmp_path / "AGENTS.md").mkdir()
    assert "AGENTS.md ignored" in project_instructions(tmp_path).notes[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert project_instructions(empty).text == "" and project_instructions(empty).notes == []


def test_system_prompt_accepts_a_template_and_a_tool_list():
    prompt = system_prompt([TOOLS["read_file"]], "", template="T:\n{{tools}}\nR: {{repo_summary}}")
    assert prompt.startswith("T:\n## read_file") and prompt.endswith("R: (no summary)\n")
