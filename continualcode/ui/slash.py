"""Slash commands: one small function each, registered in one table with a one-line help.

Each takes the open `Session` and the text after the command and returns
something rich can print (or None). The REPL and the TUI dispatch through
`run_slash`, so both offer the same commands.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from typing import Callable

from rich.table import Table

from continualcode.adapters.registry import AdapterError
from continualcode.agent.file_history import UndoRefused
from continualcode.engines.factory import serve_version
from continualcode.paths import log_path
from continualcode.session import Session
from continualcode.ui.console import SafeConsole, plain


class QuitRequested(Exception):
    pass


class SlashError(ValueError):
    """A malformed slash command; the message says the right usage."""


@dataclass(frozen=True)
class SlashCommand:
    name: str
    usage: str
    help: str
    run: Callable[[Session, str], object]


def cmd_help(session: Session, arg: str):
    table = Table(title="commands", show_header=False, box=None)
    for command in SLASH_COMMANDS.values():
        table.add_row(command.usage, command.help)
    return table


def cmd_status(session: Session, arg: str):
    table = Table(show_header=False, box=None)
    table.add_row("repo", plain(str(session.repo)))
    table.add_row("model", f"{session.settings.model} ({session.settings.engine} engine)")
    table.add_row("session", str(session.session_id))
    for note in session.notes:
        table.add_row("note", plain(note))
    table.add_row("serving adapter", session.engine.adapter_version or "base")
    table.add_row("feedback", ", ".join(f"{k} {v}" for k, v in session.store.feedback_counts().items()) or "none")
    if session.trainer is None:
        table.add_row("learning", "off" if not session.settings.learn else "no trainer for this engine")
        table.add_row("queue", str(session.store.queue_length()))
        table.add_row("log", plain(str(log_path(session.repo))))
        return table
    status = session.trainer.status()
    table.add_row("trainer", plain(f"running · {status.phase}" if status.running else "stopped"))
    table.add_row("queue", f"{status.queue} pending example(s)")
    table.add_row("live version", status.live_version or "base")
    if status.last_metrics:
        m = status.last_metrics
        table.add_row("last step", plain(f"{m.get('version')}: loss {m['loss']:.4f}, divergence {m['divergence']:.4f}, "
                      f"advantage {m['advantage']:+.3f}, {m['steps']} step(s) in {m['seconds']:.1f}s, "
                      f"{m.get('decision', '')} {m.get('reason', '')}".rstrip()))
    if status.last_error:
        table.add_row("last error", plain(status.last_error))
    table.add_row("log", plain(str(log_path(session.repo))))
    return table


def cmd_feedback(session: Session, arg: str):
    if not arg.strip():
        raise SlashError("usage: /feedback TEXT  (feedback on the last reply)")
    if session.agent.last_reply_id is None:
        raise SlashError("no reply to give feedback on yet")
    session.agent.recorder.record("manual", arg.strip(), session.agent.last_reply_id)
    return "feedback recorded on the last reply"


def cmd_undo(session: Session, arg: str):
    try:
        return session.agent.undo(arg.strip() or None)
    except UndoRefused as exc:
        raise SlashError(f"cannot undo: {exc}") from exc


def cmd_clear(session: Session, arg: str):
    new_id = session.store.start_session(repo_root=str(session.repo), model=session.settings.model,
                                          engine=session.settings.engine)
    session.agent.switch_session(new_id)
    session.session_id = new_id
    return f"new conversation (session {new_id})"


def cmd_resume(session: Session, arg: str):
    if not arg.strip():
        table = Table("id", "started", "messages", "first prompt")
        for row in session.store.list_sessions()[:20]:
            table.add_row(str(row["id"]), str(row["created"])[:19], str(row.get("messages", "")),
                          plain((row.get("title") or "")[:60]))
        return table
    try:
        target = session.store.session(int(arg.strip()))
    except ValueError:
        target = None
    if target is None:
        raise SlashError(f"no session {arg.strip()!r}; /resume lists them")
    session.agent.switch_session(target["id"])
    session.session_id = target["id"]
    return f"resumed session {target['id']} ({len(session.agent.messages) - 1} messages)"


def cmd_model(session: Session, arg: str):
    from continualcode.models import BUNDLED

    if arg.strip():
        raise SlashError(f"switching models needs a restart: python -m continualcode --model {arg.strip()} "
                         "(adapters are trained for one base model)")
    names = ", ".join(BUNDLED)
    return f"model {session.settings.model} on the {session.settings.engine} engine; bundled: {names}"


def cmd_quit(session: Session, arg: str):
    raise QuitRequested


def cmd_adapters(session: Session, arg: str):
    from continualcode.ui.adapter_view import versions_table

    return versions_table(session.registry)


def cmd_rollback(session: Session, arg: str):
    if not arg.strip():
        raise SlashError("usage: /rollback VERSION  (e.g. v3, or base)")
    try:
        if session.trainer is not None:
            seconds = session.trainer.rollback(session.registry.resolve(arg.strip()), reason="/rollback")
        else:
            session.registry.rollback(arg.strip(), reason="/rollback")
            seconds = serve_version(session.engine, session.registry, session.registry.resolve("live"))
    except AdapterError as exc:
        raise SlashError(str(exc)) from exc
    return f"live: {session.engine.adapter_version or 'base'} (swap {seconds * 1000:.0f} ms)"


def cmd_diff(session: Session, arg: str):
    from rich.console import Group

    from continualcode.ui.adapter_view import (
        diff_table,
        probe_answers,
        probe_prompts,
        probe_table,
    )

    parts = shlex.split(arg)
    if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].isdigit()):
        raise SlashError("usage: /diff A B [PROBES]  (versions, e.g. v1 v2, or base; PROBES default 2, 0 = none)")
    count = int(parts[2]) if len(parts) == 3 else 2
    try:
        table = diff_table(session.registry, session.store, parts[0], parts[1])
        if not count:
            return table
        probes = probe_answers(session.engine, session.registry, parts[0], parts[1],
                               probe_prompts(session.store, count))
    except AdapterError as exc:
        raise SlashError(str(exc)) from exc
    return Group(table, probe_table(probes, parts[0], parts[1]))


def cmd_train(session: Session, arg: str):
    if session.trainer is None:
        raise SlashError("learning is off (--no-learn) or this engine has no trainer")
    limit = None
    if arg.strip():
        if not arg.strip().isdigit():
            raise SlashError("usage: /train [N]  (N batches; default: everything pending)")
        limit = int(arg.strip())
    results = session.trainer.train_pending(limit)
    if not results:
        return "nothing pending"
    lines = []
    for r in results:
        if "version" in r:
            lines.append(f"examples {r['examples']} → {r['version']} ({r['decision']}: {r['reason']}), "
                         f"loss {r['metrics']['loss']:.4f}")
        else:
            lines.append(f"examples {r['examples']}: {r.get('skipped') or r.get('error')}")
    return "\n".join(lines)


def cmd_credit(session: Session, arg: str):
    from continualcode.learning.credit import CreditUnavailable, credit_for_turn
    from continualcode.ui.credit_view import render_credit

    if arg.strip() and not arg.strip().isdigit():
        raise SlashError("usage: /credit [N]  (N-th most recent reply with feedback; default 1, the latest)")
    try:
        view = credit_for_turn(session.engine, session.store, session.registry, session.session_id,
                               int(arg.strip() or 1))
    except CreditUnavailable as exc:
        raise SlashError(str(exc)) from exc
    return render_credit(view)


def cmd_solve(session: Session, arg: str, ui=None):
    """/solve "TASK" --check "COMMAND" [--budget K] [--method M] [--apply] [--merge yes|no].

    ``ui`` is the REPL's terminal unless the caller (the TUI) brings its own.
    """
    from continualcode.solve.solver import (
        METHODS,
        SolveOutcome,
        add_arguments,
        run_solve,
    )
    from continualcode.ui.solve_view import TerminalUI, summary

    parser = argparse.ArgumentParser(prog="/solve", add_help=False, exit_on_error=False)
    add_arguments(parser)
    try:
        args = parser.parse_args(shlex.split(arg))
    except (argparse.ArgumentError, ValueError, SystemExit) as exc:
        raise SlashError(f'usage: /solve "TASK" --check "COMMAND" [--budget K] [--method {"|".join(METHODS)}] '
                         f"[--apply] [--merge yes|no] ({exc})") from exc
    if args.budget < 1:
        raise SlashError("--budget must be at least 1")
    session.sync_live()
    report, _ = run_solve(session.repo, session.settings, args, session.engine, session.registry,
                          ui or TerminalUI(SafeConsole()), user_store=lambda: session.store)
    session.sync_live()
    return summary(SolveOutcome.from_json(report), report)


SLASH_COMMANDS: dict[str, SlashCommand] = {c.name: c for c in (
    SlashCommand("/help", "/help", "list commands", cmd_help),
    SlashCommand("/status", "/status", "model, live adapter, training queue, last step metrics", cmd_status),
    SlashCommand("/feedback", "/feedback TEXT", "give feedback on the last reply", cmd_feedback),
    SlashCommand("/undo", "/undo [REASON]", "revert the agent's last file change (git) and learn from it", cmd_undo),
    SlashCommand("/clear", "/clear", "start a new conversation", cmd_clear),
    SlashCommand("/resume", "/resume [ID]", "list sessions, or resume one", cmd_resume),
    SlashCommand("/model", "/model", "show the model and engine", cmd_model),
    SlashCommand("/adapters", "/adapters", "list adapter versions (live marker, gate result)", cmd_adapters),
    SlashCommand("/rollback", "/rollback VERSION", "make an earlier adapter version (or base) live", cmd_rollback),
    SlashCommand("/diff", "/diff A B [PROBES]", "compare two adapter versions: weights, feedback, answers", cmd_diff),
    SlashCommand("/train", "/train [N]", "train on pending feedback now", cmd_train),
    SlashCommand("/credit", "/credit [N]", "colour a judged reply by the self-teacher's per-token advantage",
                 cmd_credit),
    SlashCommand("/solve", '/solve "TASK" --check "CMD" [--budget K] [--method M]',
                 "attempt a task in a scratch copy until the check passes, learning between attempts", cmd_solve),
    SlashCommand("/quit", "/quit", "exit (Ctrl-D)", cmd_quit),
)}


def run_slash(session: Session, line: str):
    """Dispatch one slash-command line; raises SlashError for unknown or malformed commands."""
    name, _, arg = line.strip().partition(" ")
    command = SLASH_COMMANDS.get(name.lower())
    if command is None:
        close = [c for c in SLASH_COMMANDS if c.startswith(name.lower()[:3])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SlashError(f"unknown command {name}{hint}; /help lists them")
    return command.run(session, arg)
