"""The sandboxed HumanEval runner: real problems, real child processes, real limits."""

from __future__ import annotations

import os
import time

import pytest

from continualcode.evals.humaneval import (
    ProblemError,
    extract_code,
    load_problems,
    run_candidate,
    run_python,
    select,
)


@pytest.fixture(scope="module")
def problems():
    return load_problems()


def test_all_164_problems_load(problems):
    assert len(problems) == 164 and problems["HumanEval/0"].entry_point == "has_close_elements"


@pytest.mark.parametrize("task_id", ["HumanEval/0", "HumanEval/10", "HumanEval/32"])
def test_canonical_solutions_pass(problems, task_id):
    problem = problems[task_id]  # 10 calls a helper the prompt defines; 32 needs the prompt's import
    as_body = run_candidate(problem, problem.canonical_solution)
    header = problem.prompt[problem.prompt.index(f"def {problem.entry_point}"):]
    as_reply = run_candidate(problem, f"Here it is:\n```python\n{header}{problem.canonical_solution}```\nDone.")
    assert as_body.passed and as_reply.passed, (as_body.output, as_reply.output)


def test_a_wrong_solution_fails_and_says_which_assert(problems):
    problem = problems["HumanEval/0"]
    result = run_candidate(problem, "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```")
    assert result.status == "failed" and result.exit_code == 1
    assert "assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True" in result.feedback()
    assert "AssertionError" in result.feedback() and "/tmp" not in result.feedback()


def test_an_infinite_loop_is_killed_at_its_timeout(problems):
    code = ("import os, sys\ndef has_close_elements(numbers, threshold):\n"
            "    print(os.getpid(), flush=True)\n    while True:\n        pass\n")
    started = time.monotonic()
    result = run_candidate(problems["HumanEval/0"], code, timeout=1.0)
    assert result.status == "timeout" and not result.passed
    assert 0.9 <= result.seconds and time.monotonic() - started < 8.0
    pid = int(result.output.split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the child is gone, not left spinning
    assert "timed out" in result.feedback()


def test_exiting_early_with_status_zero_is_not_a_pass(problems):
    code = "import sys\ndef has_close_elements(numbers, threshold):\n    return False\nsys.exit(0)\n"
    assert run_candidate(problems["HumanEval/0"], code).status == "failed"


def test_sleeping_code_is_killed_by_the_wall_clock():
    result = run_python("import time\ntime.sleep(30)\n", timeout=1.0)
    assert result.status == "timeout" and result.seconds < 8.0


def test_the_sandbox_limits_memory_and_hides_environment_and_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "secret")
    monkeypatch.chdir(tmp_path)
    result = run_python("import os\nopen('left.txt', 'w').write('x')\nprint(sorted(os.environ))\n"
                        "x = bytearray(4 * 1024 ** 3)\n", memory_mb=512)
    assert result.status == "failed" and "MemoryError" in result.output
    assert "MY_API_TOKEN" not in result.output and not (tmp_path / "left.txt").exists()


def test_extract_code_and_select(problems):
    assert extract_code("text\n```python\nx = 1\n```\nmore") == "x = 1\n"
    assert extract_code("```\ny = 2\n```") == "y = 2\n"
    assert extract_code("no fence") == "no fence"
    assert [p.number for p in select(problems, "3, 10-12,HumanEval/0")] == [3, 10, 11, 12, 0]
    with pytest.raises(ProblemError, match="0..163"):
        select(problems, "164")
    with pytest.raises(ProblemError, match="not a HumanEval id"):
        select(problems, "abc")


OLD_MARKER = "__continualcode_tests_passed__"
"""What the harness used to print after check() returned; a candidate could print it itself."""
WRONG = "def has_close_elements(numbers, threshold):\n    return False\n"


@pytest.mark.parametrize("forgery", [
    # issue 13 item 12: print the pass marker, then leave before the tests run
    f"import os\nprint({OLD_MARKER!r}, flush=True)\nos._exit(0)\n",
    # ... or let the tests fail and have the excepthook say they passed
    f"import os, sys\ndef hook(*args):\n    print({OLD_MARKER!r}, flush=True)\n    os._exit(0)\n"
    "sys.excepthook = hook\n",
    # ... or exit early and print it on the way out
    f"import atexit, sys\natexit.register(lambda: print({OLD_MARKER!r}))\nsys.exit(0)\n",
])
def test_a_candidate_cannot_forge_a_pass(problems, forgery):
    result = run_candidate(problems["HumanEval/0"], f"```python\n{WRONG}{forgery}```")
    assert result.status == "failed" and not result.passed


def test_a_real_pass_passes_and_the_marker_is_not_shown(problems):
    problem = problems["HumanEval/0"]
    result = run_candidate(problem, "print('thinking')\n" + problem.prompt + problem.canonical_solution)
    assert result.passed and result.exit_code == 0 and result.output == "thinking\n"
    printing = run_python("print('hello')\n")
    assert printing.passed and printing.output == "hello\n"


def test_the_sandbox_allows_no_new_processes(problems):
    """RLIMIT_NPROC 0 (root is exempt: then the process runner still stops the child, setsid or not)."""
    code = ("import os, resource, time\n"
            "print('nproc', resource.getrlimit(resource.RLIMIT_NPROC), flush=True)\n"
            "try:\n"
            "    pid = os.fork()\n"
            "except OSError:\n"
            "    print('fork refused', flush=True)\n"
            "else:\n"
            "    if pid == 0:\n"
            "        os.setsid()\n"
            "        time.sleep(60)\n"
            "    print('child', pid, flush=True)\n")
    result = run_python(code)
    assert "nproc (0, 0)" in result.output
    if os.geteuid() != 0:
        assert "fork refused" in result.output
    else:
        pid = int(result.output.split("child ")[1].split()[0])
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
