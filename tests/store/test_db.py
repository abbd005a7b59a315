"""The store on a real SQLite file: API round trips, redaction, two real processes
sharing one file (concurrent writes, exclusive claims, stale claims), private file
modes, and what a damaged or locked file tells the user."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from continualcode.store.db import Store, StoreError
from continualcode.store.rows import StoreCorruptError, StoreLockedError, utc_now
from tests.store.damage import DAMAGE, make_store, write_lock_held

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store.db") as opened:
        yield opened


def _turn(store: Store, session: int, user: str = "fix the bug", reply: str = "done") -> int:
    store.add_message(session, "user", user)
    return store.add_message(session, "assistant", reply, token_ids=[5, 6, 7],
                             logprobs=[-0.5, -1.0, -0.25], adapter_version="v0001")


# -- API ---------------------------------------------------------------------


def test_sessions_list_latest_and_resume(store: Store):
    first = store.start_session("/repo", "qwen", "embedded")
    second = store.start_session("/repo", "qwen", "vllm", title="add tests")
    store.add_message(first, "user", "hello")
    store.set_session_title(first, "hello")
    store.end_session(first)

    assert store.latest_session()["id"] == second
    listed = store.list_sessions()
    assert [s["id"] for s in listed] == [second, first]
    assert [s["messages"] for s in listed] == [0, 1]
    assert store.session(first)["title"] == "hello" and store.session(first)["ended"]

    resumed = store.resume_session(first)
    assert resumed["id"] == first and store.session(first)["ended"] is None
    assert store.resume_session()["id"] == second
    with pytest.raises(StoreError, match="no session 99"):
        store.resume_session(99)


def test_resume_without_sessions_says_what_to_do(store: Store):
    assert store.latest_session() is None
    with pytest.raises(StoreError, match="no sessions yet"):
        store.resume_session()


def test_messages_keep_order_token_ids_logprobs_and_version(store: Store):
    session = store.start_session("/repo", "qwen", "embedded")
    store.add_message(session, "system", "you are a coding agent")
    reply = _turn(store, session)
    rows = store.session_messages(session)
    assert [(m["idx"], m["role"]) for m in rows] == [(0, "system"), (1, "user"), (2, "assistant")]
    assert store.message(reply) == rows[2]
    assert rows[2]["token_ids"] == [5, 6, 7]
    assert rows[2]["logprobs"] == [-0.5, -1.0, -0.25]
    assert rows[2]["adapter_version"] == "v0001"
    assert rows[1]["token_ids"] is None and rows[1]["adapter_version"] is None
    assert datetime.fromisoformat(rows[0]["created"]).utcoffset().total_seconds() == 0


def test_message_validation(store: Store):
    session = store.start_session("/repo", "qwen", "embedded")
    with pytest.raises(ValueError, match="role"):
        store.add_message(session, "robot", "x")
    with pytest.raises(ValueError, match="3 token ids but 2 log-probs"):
        store.add_message(session, "assistant", "x", token_ids=[1, 2, 3], logprobs=[0.0, 0.0])
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
        store.add_message(12345, "user", "orphan")
    assert store.session_messages(session) == []


def test_tool_calls_record_decision_and_result(store: Store):
    reply = _turn(store, store.start_session("/repo", "qwen", "embedded"))
    call = store.add_tool_call(reply, "edit", {"path": "a.py", "old": "x", "new": "y"})
    store.update_tool_call(call, decision="edited", decision_reason="use z",
                           edited_arguments={"path": "a.py", "old": "x", "new": "z"})
    store.update_tool_call(call, result="1 replacement", exit_code=0, ok=True, duration=0.01)
    row = store.tool_call(call)
    assert row["arguments"] == {"path": "a.py", "old": "x", "new": "y"}
    assert row["edited_arguments"]["new"] == "z"
    assert (row["decision"], row["ok"], row["exit_code"]) == ("edited", 1, 0)
    assert store.message_tool_calls(reply) == [row]
    with pytest.raises(ValueError, match="decision 'yes'"):
        store.update_tool_call(call, decision="yes")
    with pytest.raises(ValueError, match="unknown tool call fields"):
        store.update_tool_call(call, colour="red")
    with pytest.raises(ValueError, match="no tool call"):
        store.update_tool_call(999, ok=False)


def test_feedback_counts_and_messages_with_feedback(store: Store):
    one = store.start_session("/repo", "qwen", "embedded")
    two = store.start_session("/repo", "qwen", "embedded")
    judged = _turn(store, one)
    unjudged = _turn(store, one, reply="fine")
    other = _turn(store, two)
    call = store.add_tool_call(judged, "bash", {"cmd": "rm -rf build"}, decision="denied",
                               decision_reason="not that")
    store.add_feedback("denial", "not that", judged, tool_call_id=call)
    store.add_feedback("followup", "also add a test", judged)
    store.add_feedback("followup", "thanks", other)
    with pytest.raises(ValueError, match="feedback kind"):
        store.add_feedback("praise", "x", judged)

    assert store.feedback_counts() == {"denial": 1, "followup": 2}
    assert store.feedback_counts(session_id=one) == {"denial": 1, "followup": 1}
    judged_rows = store.messages_with_feedback(one)
    assert [m["id"] for m in judged_rows] == [judged]
    assert unjudged not in [m["id"] for m in judged_rows]
    assert [f["kind"] for f in judged_rows[0]["feedback"]] == ["denial", "followup"]
    assert judged_rows[0]["feedback"][0]["tool_call_id"] == call


def test_example_defaults_to_the_judged_turn(store: Store):
    session = store.start_session("/repo", "qwen", "embedded")
    reply = _turn(store, session)
    feedback = store.add_feedback("tool_error", "exit 1", reply)
    x = [{"role": "user", "content": "fix the bug"}]
    example = store.example(store.add_example(feedback, reply, x, "exit 1"))
    assert (example["y"], example["y_token_ids"], example["y_logprobs"]) == ("done", [5, 6, 7], [-0.5, -1.0, -0.25])
    assert example["x"] == x and example["f"] == "exit 1" and example["s"] is None
    assert (example["status"], example["template"], example["redacted"]) == ("pending", "reprompt", 0)
    assert store.examples_for_message(reply) == [example]
    assert store.messages_with_feedback(session)[0]["examples"] == [example]

    user_message = store.session_messages(session)[0]["id"]
    with pytest.raises(ValueError, match="not an assistant message"):
        store.add_example(feedback, user_message, x, "exit 1")


def test_example_is_redacted_and_flagged(store: Store):
    session = store.start_session("/repo", "qwen", "embedded")
    key = "AKIAIOSFODNN7EXAMPLE"
    reply = store.add_message(session, "assistant", f"export AWS_KEY_ID={key}", token_ids=[1, 2, 3])
    feedback = store.add_feedback("followup", f"use ghp_{'a' * 36} instead", reply)
    x = [{"role": "user", "content": f"my key is {key}", "meta": {"note": "password: hunter2"}}]
    example = store.example(store.add_example(
        feedback, reply, x, f"use ghp_{'a' * 36} instead", s="token = 'abcdefgh12345'"))
    stored = json.dumps(example)
    assert key not in stored and "ghp_" not in stored and "hunter2" not in stored and "abcdefgh" not in stored
    assert example["x"][0]["content"] == "my key is [REDACTED]"
    assert example["x"][0]["meta"]["note"] == "password: [REDACTED]"
    assert example["y"] == "export AWS_KEY_ID=[REDACTED]"
    # The sampled ids spelled the key: dropped with the message's, the trainer re-tokenizes y.
    assert example["redacted"] == 1 and example["y_token_ids"] is None and example["y_logprobs"] is None
    assert store.message(reply)["redacted"] == 1 and store.message(reply)["token_ids"] is None
    assert example["s"] == "token = '[REDACTED]'"

    store.set_example_solution(example["id"], f"key {key}")
    assert store.example(example["id"])["s"] == "key [REDACTED]"
    # Only y decides the flag: a secret in x alone leaves y's token ids valid.
    clean = store.add_message(session, "assistant", "ok", token_ids=[9])
    flagged = store.example(store.add_example(feedback, clean, x, "f"))
    assert flagged["redacted"] == 0 and flagged["x"][0]["content"] == "my key is [REDACTED]"


def test_claim_mark_and_queue(store: Store):
    session = store.start_session("/repo", "qwen", "embedded")
    reply = _turn(store, session)
    feedback = store.add_feedback("manual", "shorter", reply)
    ids = [store.add_example(feedback, reply, [], "shorter") for _ in range(5)]
    store.add_example(feedback, reply, [], "noise", status="skipped")
    assert store.queue_length() == 5
    assert [e["id"] for e in store.pending_examples(limit=2)] == ids[:2]

    claimed = store.claim_examples(3)
    assert [e["id"] for e in claimed] == ids[:3]
    assert all(e["status"] == "training" and e["claimed_by"] for e in claimed)
    assert store.queue_length() == 2 and store.claim_examples(0) == []

    assert store.mark_examples(ids[:2], "trained", adapter_version="v0002") == 2
    store.mark_examples([ids[2]], "failed", error="NaN loss")
    trained, failed = store.example(ids[0]), store.example(ids[2])
    assert (trained["status"], trained["adapter_version"], trained["claimed_by"]) == ("trained", "v0002", None)
    assert (failed["status"], failed["error"]) == ("failed", "NaN loss")
    assert store.example_counts() == {"trained": 2, "failed": 1, "pending": 2, "skipped": 1}
    with pytest.raises(ValueError, match="use claim_examples|not one of"):
        store.mark_examples(ids, "training")
    with pytest.raises(ValueError, match="only 1 of 2"):
        store.mark_examples([ids[0], 999], "pending")
    assert store.example(ids[0])["status"] == "trained"  # the failed call changed nothing

    assert [e["id"] for e in store.recent_examples(2)] == [ids[-1] + 1, ids[-1]]
    assert store.requeue_failed() == 1
    assert (store.example(ids[2])["status"], store.example(ids[2])["error"]) == ("pending", None)
    assert store.requeue_failed() == 0


def test_train_steps_and_adapter_events(store: Store):
    first = store.add_train_step("v0001", [1, 2], {"loss": 0.5, "kl": 0.01})
    second = store.add_train_step("v0002", [3], {"loss": 0.25})
    steps = store.recent_train_steps(5)
    assert [s["id"] for s in steps] == [second, first]
    assert steps[1]["example_ids"] == [1, 2] and steps[1]["metrics"]["kl"] == 0.01
    store.add_adapter_event("v0001", "created", {"parent": None})
    store.add_adapter_event("v0002", "created", {"parent": "v0001"})
    store.add_adapter_event("v0001", "rollback")
    assert [e["event"] for e in store.adapter_events("v0001")] == ["created", "rollback"]
    assert len(store.adapter_events()) == 3
    assert store.adapter_events("v0002")[0]["detail"] == {"parent": "v0001"}
    with pytest.raises(ValueError, match="adapter event"):
        store.add_adapter_event("v0003", "deleted")


def test_transaction_groups_writes(store: Store):
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction():
            store.add_train_step("v0001", [1], {"loss": 1.0})
            store.add_adapter_event("v0001", "created")
            raise RuntimeError("boom")
    assert store.recent_train_steps() == [] and store.adapter_events() == []


def test_threads_share_one_store(store: Store):
    session = store.start_session("/repo", "qwen", "embedded")
    errors: list[BaseException] = []

    def write(tag: str) -> None:
        try:
            for i in range(100):
                store.add_message(session, "user", f"{tag}{i}")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(tag,)) for tag in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [m["idx"] for m in store.session_messages(session)] == list(range(200))


# -- the repository directory ---------------------------------------------------


def test_for_repo_excludes_store_dir_from_git_once(git_repo: Path):
    exclude = git_repo / ".git" / "info" / "exclude"
    exclude.write_text("# local ignores\n*.swp")  # no trailing newline
    Store.for_repo(git_repo).close()
    Store.for_repo(git_repo).close()
    assert exclude.read_text() == "# local ignores\n*.swp\n.continualcode/\n"
    assert (git_repo / ".continualcode" / "store.db").exists()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                            cwd=git_repo, capture_output=True, text=True, check=True).stdout
    assert ".continualcode" not in status


def test_for_repo_in_a_worktree_uses_the_main_exclude(git_repo: Path, tmp_path: Path):
    worktree = tmp_path / "wt"
    subprocess.run(["git", "worktree", "add", "-q", str(worktree)], cwd=git_repo, check=True)
    Store.for_repo(worktree).close()
    assert ".continualcode/" in (git_repo / ".git" / "info" / "exclude").read_text().splitlines()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=worktree,
                            capture_output=True, text=True, check=True).stdout
    assert ".continualcode" not in status


def test_for_repo_outside_git(tmp_path: Path):
    Store.for_repo(tmp_path).close()
    assert (tmp_path / ".continualcode" / "store.db").exists()
    assert not (tmp_path / ".git").exists()




# -- two processes on one file ---------------------------------------------------

WRITER = """
import sys, time, pathlib
from continualcode.store.db import Store
path, tag, go = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
pathlib.Path(f"{go}.{tag}.ready").touch()
while not go.exists():
    time.sleep(0.002)
store = Store(path)  # both processes open (and migrate) the fresh file at once
session = store.latest_session()["id"] if store.latest_session() else store.start_session("/r", "m", "e")
for i in range(200):
    message = store.add_message(session, "assistant", f"{tag}-{i}", token_ids=[i], logprobs=[-1.0])
    store.add_feedback("manual", f"{tag}-{i}", message)
"""

CLAIMER = """
import json, sys, time, pathlib
from continualcode.store.db import Store
path, go, tag = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
store = Store(path)
pathlib.Path(f"{go}.{tag}.ready").touch()
while not go.exists():
    time.sleep(0.002)
taken = []
while batch := store.claim_examples(2):
    taken += [row["id"] for row in batch]
    time.sleep(0.001)  # a trainer works between claims
print(json.dumps(taken))
"""


def _spawn(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _start_together(go: Path, tags: str) -> None:
    """Release the children at once, after every one of them is ready."""
    deadline = time.monotonic() + 30
    while not all(Path(f"{go}.{tag}.ready").exists() for tag in tags):
        assert time.monotonic() < deadline, "child processes did not start"
        time.sleep(0.01)
    go.touch()


def _finish(processes: list[subprocess.Popen]) -> list[str]:
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        outputs.append(out)
    return outputs


def test_two_processes_write_concurrently(tmp_path: Path):
    path, go = tmp_path / "store.db", tmp_path / "go"
    with Store(path) as store:
        session = store.start_session("/r", "m", "e")
    writers = [_spawn(WRITER, str(path), tag, str(go)) for tag in "ab"]
    _start_together(go, "ab")
    _finish(writers)

    with Store(path) as store:
        messages = store.session_messages(session)
        assert [m["idx"] for m in messages] == list(range(400))
        for tag in "ab":
            assert sorted(int(m["content"].split("-")[1]) for m in messages
                          if m["content"].startswith(tag)) == list(range(200))
        assert store.feedback_counts() == {"manual": 400}
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_processes_on_a_fresh_file_migrate_once(tmp_path: Path):
    path, go = tmp_path / "fresh.db", tmp_path / "go"
    writers = [_spawn(WRITER, str(path), tag, str(go)) for tag in "ab"]
    _start_together(go, "ab")
    _finish(writers)
    with Store(path) as store:
        assert sum(s["messages"] for s in store.list_sessions()) == 400
        assert store.feedback_counts() == {"manual": 400}


def _seed_examples(store: Store, n: int) -> list[int]:
    reply = _turn(store, store.start_session("/r", "m", "e"))
    feedback = store.add_feedback("manual", "f", reply)
    with store.transaction():
        return [store.add_example(feedback, reply, [], "f") for _ in range(n)]


def test_claims_are_exclusive_across_processes_and_requeued_when_they_die(tmp_path: Path):
    path, go = tmp_path / "store.db", tmp_path / "go"
    with Store(path) as store:
        ids = _seed_examples(store, 300)
    claimers = [_spawn(CLAIMER, str(path), str(go), tag) for tag in "ab"]
    _start_together(go, "ab")
    first, second = (set(json.loads(out)) for out in _finish(claimers))
    assert first and second, "both processes should have won some claims"
    assert first.isdisjoint(second)
    assert first | second == set(ids)

    # Both claimers exited without marking anything: their rows are stale.
    with sqlite3.connect(path) as raw:
        owners = {row[0] for row in raw.execute("SELECT claimed_by FROM examples")}
    assert len(owners) == 2
    with Store(path) as store:  # opening re-queues them
        assert store.queue_length() == 300
        assert store.example_counts() == {"pending": 300}


def test_requeue_spares_live_claims_and_catches_reused_pids(tmp_path: Path):
    path = tmp_path / "store.db"
    trainer = Store(path)
    ids = _seed_examples(trainer, 4)
    trainer.claim_examples(4)

    with Store(path) as other:  # a second REPL opening while this process trains
        assert other.example_counts() == {"training": 4}
        host = socket.gethostname()
        other.db.execute("UPDATE examples SET claimed_by = ? WHERE id = ?",
                         [f"{host}:{os.getpid()}:1", ids[0]])  # our pid, another start time
        other.db.execute("UPDATE examples SET claimed_by = NULL WHERE id = ?", [ids[1]])
        other.db.execute("UPDATE examples SET claimed_by = 'elsewhere:1:1', claimed_at = ? WHERE id = ?",
                         ["2020-01-01T00:00:00.000+00:00", ids[2]])
        assert other.requeue_stale_training() == 2  # reused pid, no owner
        assert other.requeue_stale_training(older_than=3600) == 1  # another host's old claim
        assert [e["id"] for e in other.pending_examples()] == ids[:3]
        assert other.example(ids[3])["status"] == "training"
    trainer.close()


def test_timestamps_are_utc_iso():
    stamp = utc_now()
    parsed = datetime.fromisoformat(stamp)
    assert parsed.tzinfo is not None and parsed.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - parsed).total_seconds()) < 5


# -- privacy and errors (issue 13, items 4 and 11) ---------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_files_are_private_from_the_start(tmp_path: Path):
    previous = os.umask(0o022)  # the usual umask: SQLite alone would make store.db 0644
    try:
        with Store.for_repo(tmp_path) as store:
            store.start_session("/repo", "qwen", "embedded")  # the first write creates -wal and -shm
            state = tmp_path / ".continualcode"
            modes = {p.name: _mode(p) for p in state.glob("store.db*")}
    finally:
        os.umask(previous)
    assert modes == {"store.db": 0o600, "store.db-wal": 0o600, "store.db-shm": 0o600}
    assert _mode(state) == 0o700


def test_an_older_world_readable_store_is_made_private(tmp_path: Path):
    path = tmp_path / "store.db"
    Store(path).close()
    os.chmod(path, 0o644)
    Store(path).close()
    assert _mode(path) == 0o600


@pytest.mark.parametrize("kind", ["truncated", "garbage", "zeroed page"])
def test_a_damaged_file_is_reported_with_what_to_do(tmp_path: Path, kind: str):
    path = tmp_path / ".continualcode" / "store.db"
    make_store(path)
    DAMAGE[kind](path)
    with pytest.raises(StoreCorruptError) as raised:
        Store(path)  # a zeroed page opens fine in SQLite: quick_check on open finds it
    message = str(raised.value)
    assert f"{path} is damaged" in message and "new, empty store" in message

    # The advice works as written: run it, and the next open starts afresh.
    advice = re.search(r"mkdir -p .*/broken-\d{8}-\d{6}/$", message, re.MULTILINE).group(0)
    subprocess.run(advice, shell=True, check=True)
    assert [p.name for p in path.parent.glob("broken-*/*")] == ["store.db"] and not path.exists()
    with Store(path) as fresh:
        assert fresh.list_sessions() == []


def test_damage_found_by_a_later_query_is_a_store_error(tmp_path: Path):
    path = tmp_path / "store.db"
    store = Store(path)
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE adapter_events")  # what a bad page under that table amounts to
    raw.commit()
    raw.close()
    with pytest.raises(StoreCorruptError, match="no such table: adapter_events.*Move it aside"):
        store.adapter_events()
    with pytest.raises(StoreCorruptError):
        store.add_adapter_event("v0001", "created")
    session = store.start_session("/repo", "qwen", "embedded")  # the rest still works
    with pytest.raises(sqlite3.IntegrityError):  # a caller's bug is not disguised as damage
        store.add_feedback("manual", "text", message_id=999)
    assert store.session(session)["id"] == session
    store.close()


def test_a_write_lock_held_too_long_says_what_to_do(tmp_path: Path):
    path = tmp_path / "store.db"
    Store(path).close()
    with write_lock_held(path):
        store = Store(path, busy_timeout=0.2)  # opening only reads: WAL readers never wait
        with pytest.raises(StoreLockedError, match=r"locked: another process kept writing to it for more "
                                                   r"than 0.2 s.*Another continualcode session"):
            store.start_session("/repo", "qwen", "embedded")
    assert store.start_session("/repo", "qwen", "embedded") == 1  # released: works again
    store.close()
