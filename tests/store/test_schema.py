"""Schema migrations on real SQLite files: from empty, from a hand-written v1
file, idempotent reopen, a file from the future, and a migration that fails."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import continualcode.store.db as store_module
from continualcode.store.db import Store, StoreVersionError
from continualcode.store.schema import MIGRATIONS, SCHEMA_VERSION

# The v1 schema as released, written independently of the migration code so
# the test catches a v1 migration that was edited after release.
V1_DDL = """
CREATE TABLE sessions (id INTEGER PRIMARY KEY, created TEXT NOT NULL, repo_root TEXT NOT NULL,
    model TEXT NOT NULL, engine TEXT NOT NULL, title TEXT, ended TEXT);
CREATE TABLE messages (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id),
    idx INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, token_ids TEXT,
    adapter_version TEXT, created TEXT NOT NULL);
CREATE TABLE tool_calls (id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL REFERENCES messages(id),
    name TEXT NOT NULL, arguments TEXT NOT NULL, decision TEXT, decision_reason TEXT,
    edited_arguments TEXT, result TEXT, exit_code INTEGER, ok INTEGER, duration REAL,
    created TEXT NOT NULL);
CREATE TABLE feedback (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, text TEXT NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages(id), tool_call_id INTEGER REFERENCES tool_calls(id),
    created TEXT NOT NULL);
CREATE TABLE examples (id INTEGER PRIMARY KEY, feedback_id INTEGER NOT NULL REFERENCES feedback(id),
    message_id INTEGER NOT NULL REFERENCES messages(id), x TEXT NOT NULL, y TEXT NOT NULL,
    y_token_ids TEXT, f TEXT NOT NULL, s TEXT, template TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', error TEXT, adapter_version TEXT,
    created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE train_steps (id INTEGER PRIMARY KEY, adapter_version TEXT, example_ids TEXT NOT NULL,
    metrics TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE adapter_events (id INTEGER PRIMARY KEY, version TEXT NOT NULL, event TEXT NOT NULL,
    detail TEXT, created TEXT NOT NULL);
CREATE UNIQUE INDEX idx_messages_session_id_idx ON messages (session_id, idx);
CREATE INDEX idx_tool_calls_message_id ON tool_calls (message_id);
CREATE INDEX idx_feedback_message_id ON feedback (message_id);
CREATE INDEX idx_feedback_kind ON feedback (kind);
CREATE INDEX idx_examples_status_id ON examples (status, id);
CREATE INDEX idx_examples_message_id ON examples (message_id);
CREATE INDEX idx_examples_feedback_id ON examples (feedback_id);
CREATE INDEX idx_adapter_events_version_id ON adapter_events (version, id);
PRAGMA user_version = 1;
"""

T = "2025-01-01T00:00:00.000+00:00"


def _write_v1(path: Path) -> None:
    with sqlite3.connect(path) as raw:
        raw.executescript(V1_DDL)
        raw.execute("INSERT INTO sessions VALUES (1, ?, '/repo', 'qwen', 'embedded', 'old', NULL)", [T])
        raw.execute("INSERT INTO messages VALUES (1, 1, 0, 'user', 'fix it', NULL, NULL, ?)", [T])
        raw.execute("INSERT INTO messages VALUES (2, 1, 1, 'assistant', 'done', '[1,2]', 'v0001', ?)", [T])
        raw.execute("INSERT INTO feedback VALUES (1, 'followup', 'wrong file', 2, NULL, ?)", [T])
        raw.execute("INSERT INTO examples VALUES (1, 1, 2, '[]', 'done', '[1,2]', 'wrong file', NULL, "
                    "'hindsight', 'training', NULL, NULL, ?, ?)", [T, T])
    raw.close()


def _columns(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as raw:
        tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = {t: [r[1] for r in raw.execute(f"PRAGMA table_info({t})")] for t in tables}
        indexes = sorted(r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'"))
    raw.close()
    return columns | {"__indexes__": indexes}


def test_migrates_an_empty_file(tmp_path: Path):
    with Store(tmp_path / "store.db") as store:
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert set(store.db.table_names()) == {"sessions", "messages", "tool_calls", "feedback",
                                               "examples", "train_steps", "adapter_events"}
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_migrates_a_v1_file_and_keeps_its_rows(tmp_path: Path):
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    _write_v1(old)
    with Store(old) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert [m["content"] for m in store.session_messages(1)] == ["fix it", "done"]
        assert store.message(2)["token_ids"] == [1, 2] and store.message(2)["logprobs"] is None
        example = store.example(1)
        assert example["redacted"] == 0 and example["f"] == "wrong file"
        # A v1 row left in 'training' has no owner: it is re-queued on open.
        assert example["status"] == "pending"
        store.add_message(1, "user", "and now?")  # the upgraded file takes new writes
    Store(fresh).close()
    assert _columns(old) == _columns(fresh)  # upgraded == created at the current version


def test_reopening_is_idempotent(tmp_path: Path):
    path = tmp_path / "store.db"
    with Store(path) as store:
        session = store.start_session("/repo", "qwen", "embedded")
        store.add_message(session, "user", "hi")
    before = _columns(path)
    for _ in range(3):
        with Store(path) as store:
            assert store.schema_version == SCHEMA_VERSION
            assert len(store.session_messages(session)) == 1
    assert _columns(path) == before


def test_a_newer_file_is_refused_untouched(tmp_path: Path):
    path = tmp_path / "store.db"
    Store(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade continualcode"):
        Store(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    raw.close()


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch):
    path = tmp_path / "store.db"
    Store(path).close()
    before = _columns(path)

    def broken(db):
        db["half_done"].create({"id": int}, pk="id")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(path)
    assert _columns(path) == before
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


GITHUB = "ghp_" + "Zq9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"


def test_upgrading_redacts_what_older_versions_stored_raw(tmp_path: Path, monkeypatch):
    """v3 (issue 13, item 4): rows a v2 store kept raw are redacted in place, their sampled
    tokens dropped, and the old text is gone from the file's bytes, not just from the rows."""
    path = tmp_path / "store.db"
    long_reply = "x" * 6000 + f" export GITHUB_TOKEN={GITHUB} " + "y" * 6000  # spills to overflow pages
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:2])
        patch.setattr(store_module, "SCHEMA_VERSION", 2)
        with Store(path) as old:
            raw = old.db.conn  # what v2 wrote: everything but examples raw
            raw.execute("INSERT INTO sessions VALUES (1, ?, '/repo', 'qwen', 'embedded', ?, NULL)", [T, f"t {GITHUB}"])
            raw.execute("INSERT INTO messages VALUES (1, 1, 0, 'user', ?, NULL, NULL, ?, NULL)", [f"key {GITHUB}", T])
            raw.execute("INSERT INTO messages VALUES (2, 1, 1, 'assistant', ?, '[1,2]', 'v0001', ?, '[-0.5,-0.5]')",
                        [long_reply, T])
            raw.execute("INSERT INTO messages VALUES (3, 1, 2, 'assistant', 'clean', '[3]', NULL, ?, '[-1.0]')", [T])
            raw.execute("INSERT INTO tool_calls (id, message_id, name, arguments, result, created) "
                        "VALUES (1, 2, 'bash', ?, ?, ?)", [json.dumps({"command": f"echo {GITHUB}"}), GITHUB, T])
            raw.execute("INSERT INTO feedback VALUES (1, 'followup', ?, 2, 1, ?)", [f"not {GITHUB}", T])
            raw.execute("INSERT INTO examples (id, feedback_id, message_id, x, y, y_token_ids, y_logprobs, f, "
                        "template, status, redacted, created, updated) VALUES (1, 1, 2, '[]', 'export "
                        "GITHUB_TOKEN=[REDACTED]', '[1,2]', '[-0.5,-0.5]', 'f', 'reprompt', 'pending', 1, ?, ?)",
                        [T, T])
            raw.commit()
    assert GITHUB.encode() in path.read_bytes()

    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.session(1)["title"] == "t [REDACTED]"
        assert store.message(1)["content"] == "key [REDACTED]" and store.message(1)["redacted"] == 1
        reply = store.message(2)
        assert "GITHUB_TOKEN=[REDACTED]" in reply["content"]
        assert (reply["token_ids"], reply["logprobs"], reply["redacted"]) == (None, None, 1)
        clean = store.message(3)
        assert (clean["token_ids"], clean["logprobs"], clean["redacted"]) == ([3], [-1.0], 0)
        call = store.tool_call(1)
        assert call["arguments"] == {"command": "echo [REDACTED]"} and call["result"] == "[REDACTED]"
        assert store.feedback(1)["text"] == "not [REDACTED]"
        assert (store.example(1)["y_token_ids"], store.example(1)["y_logprobs"]) == (None, None)
    data = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    assert GITHUB.encode() not in data
