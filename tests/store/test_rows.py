"""Every row the store writes is redacted (issue 13, item 4): a secret in any text the store
keeps never reaches the bytes of store.db or its WAL, and the sampled tokens of a redacted
reply are not kept (they spell the secret)."""

from __future__ import annotations

import json
from pathlib import Path

from continualcode.store.db import Store
from continualcode.store.rows import JSON_COLUMNS, REDACTED_COLUMNS, prepare_row

GITHUB = "ghp_" + "Zq9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"  # shape-only: redacted wherever it appears
PASSWORD = "hunter2-Batt3ry"


def file_bytes(path: Path) -> bytes:
    """The database file and its companions, as a reader of the disk sees them."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def secrets_in(path: Path) -> list[str]:
    data = file_bytes(path)
    return [s for s in (GITHUB, PASSWORD) if s.encode() in data]


def test_a_secret_in_any_text_never_reaches_the_file(tmp_path: Path):
    path = tmp_path / "store.db"
    with Store(path) as store:
        session = store.start_session("/repo", "qwen", "embedded", title=f"use {GITHUB}")
        store.add_message(session, "user", f"my token is {GITHUB} and the db password={PASSWORD}")
        reply = store.add_message(session, "assistant", f"Run: export GITHUB_TOKEN={GITHUB}",
                                  token_ids=[11, 12, 13, 14], logprobs=[-0.1, -0.2, -0.3, -0.4])
        call = store.add_tool_call(reply, "bash", {"command": f"mysql -u root -p{PASSWORD} app"},
                                   decision_reason=f"not with {GITHUB}")
        store.update_tool_call(call, decision="edited", edited_arguments={"command": f"echo {GITHUB}"},
                               result=f"GITHUB_TOKEN={GITHUB}\nDB_PASSWORD={PASSWORD}", exit_code=0, ok=True)
        store.add_message(session, "tool", f"GITHUB_TOKEN={GITHUB}")
        feedback = store.add_feedback("followup", f"never print {GITHUB}", reply, tool_call_id=call)
        example = store.add_example(feedback, reply, store.conversation_before(store.message(reply)),
                                    f"never print {GITHUB}")
        store.set_session_title(session, f"again {GITHUB}")
        store.mark_examples([example], "failed", error=f"RuntimeError: bad token {GITHUB}")
        store.add_adapter_event("v0001", "rollback", {"reason": f"password: {PASSWORD}"})
        assert secrets_in(path) == []  # while open: the rows are in the WAL

        stored = store.message(reply)
        assert stored["content"] == "Run: export GITHUB_TOKEN=[REDACTED]"
        assert (stored["token_ids"], stored["logprobs"], stored["redacted"]) == (None, None, 1)
        row = store.example(example)
        assert (row["y_token_ids"], row["y_logprobs"], row["redacted"]) == (None, None, 1)
        assert store.tool_call(call)["arguments"] == {"command": "mysql -u root -p[REDACTED] app"}
        assert "[REDACTED]" in store.tool_call(call)["result"] and "[REDACTED]" in row["error"]
    assert secrets_in(path) == []  # after close: checkpointed into store.db


def test_a_clean_reply_keeps_its_sampled_tokens(tmp_path: Path):
    with Store(tmp_path / "store.db") as store:
        session = store.start_session("/repo", "qwen", "embedded")
        reply = store.add_message(session, "assistant", "def token(): return None  # password: str",
                                  token_ids=[1, 2], logprobs=[-0.5, -0.25])
        stored = store.message(reply)
        assert (stored["token_ids"], stored["logprobs"], stored["redacted"]) == ([1, 2], [-0.5, -0.25], 0)


def test_prepare_row_redacts_text_columns_and_encodes_json():
    row = prepare_row({"content": f"key {GITHUB}", "token_ids": [1], "logprobs": [-1.0], "idx": 3,
                       "arguments": {"command": f"echo {GITHUB}", "n": 2}, "repo_root": "/r"})
    assert row["content"] == "key [REDACTED]" and row["token_ids"] is None and row["logprobs"] is None
    assert row["redacted"] == 1 and row["idx"] == 3 and row["repo_root"] == "/r"
    assert json.loads(row["arguments"]) == {"command": "echo [REDACTED]", "n": 2}
    clean = prepare_row({"y": "fine", "y_token_ids": [4], "y_logprobs": [-0.5], "redacted": 0})
    assert clean == {"y": "fine", "y_token_ids": "[4]", "y_logprobs": "[-0.5]", "redacted": 0}
    assert not REDACTED_COLUMNS & {"token_ids", "logprobs", "y_token_ids", "y_logprobs", "metrics"}
    assert {"arguments", "edited_arguments", "x", "detail"} <= JSON_COLUMNS
