"""Rich tables for adapter versions: shared by /adapters, /diff and `continualcode adapters`."""

from __future__ import annotations

from rich.table import Table

from continualcode.adapters.diff import diff_versions
from continualcode.adapters.registry import AdapterRegistry
from continualcode.engines.base import SamplingParams
from continualcode.engines.factory import serve_version
from continualcode.learning.probes import DEFAULT_PROBES
from continualcode.store.db import Store
from continualcode.ui.console import plain


def versions_rows(registry: AdapterRegistry) -> list[dict]:
    return [v.to_json() for v in registry.list()]


def versions_table(registry: AdapterRegistry) -> Table:
    table = Table("", "version", "parent", "created", "commit", "examples", "gate")
    rows = versions_rows(registry)
    for r in rows:
        gate = plain((r["decision"] or "") + (f" ({r['reason']})" if r["reason"] else ""))
        if r["corrupt"]:
            gate = plain(f"corrupt: {r['corrupt']}", "red")
        table.add_row("*" if r["live"] else "", r["version"], r["parent"] or "base", str(r["created"])[:19],
                      (r["commit"] or "")[:10], str(r["n_examples"]), gate)
    if not rows:
        table.caption = "no adapter versions yet: the base model is serving"
    return table


def diff_table(registry: AdapterRegistry, store, a: str, b: str) -> Table:
    diff = diff_versions(registry, a, b)
    table = Table("module", "‖ΔW_b − ΔW_a‖", title=f"{diff.a or 'base'} → {diff.b or 'base'}")
    for module, norm in sorted(diff.module_norms.items(), key=lambda kv: -kv[1])[:15]:
        table.add_row(module, f"{norm:.4g}")
    for side, ids in (("learned only by " + str(diff.a or "base"), diff.only_a),
                      ("learned only by " + str(diff.b or "base"), diff.only_b)):
        texts = []
        for example_id in list(ids)[:5]:
            row = store.example(example_id) if store is not None else None
            texts.append(f"#{example_id} " + ((row or {}).get("f") or "")[:80].replace("\n", " "))
        table.add_row(side, plain("\n".join(texts) or "-"))
    return table


def probe_prompts(store: Store | None, count: int) -> list[str]:
    """Recent feedback prompts first (what the user corrected), then fixed general probes."""
    prompts: list[str] = []
    if store is not None:
        for row in store.recent_examples(count):
            users = [m["content"] for m in row["x"] if m["role"] == "user"]
            if users and users[-1] not in prompts:
                prompts.append(users[-1])
    prompts.extend(p for p in DEFAULT_PROBES if p not in prompts)
    return prompts[:count]


def probe_answers(engine, registry: AdapterRegistry, a: str, b: str, prompts: list[str],
                  max_new_tokens: int = 48) -> list[dict]:
    """Greedy answers of versions a and b to each prompt; restores the engine's adapter after."""
    previous = engine.adapter_version
    answers: dict[str, list[str]] = {}
    try:
        for spec in (a, b):
            serve_version(engine, registry, registry.resolve(spec))
            answers[spec] = [engine.generate([{"role": "user", "content": p}],
                                             SamplingParams(max_new_tokens=max_new_tokens)).text for p in prompts]
    finally:
        serve_version(engine, registry, previous)
    return [{"prompt": p, a: answers[a][i], b: answers[b][i]} for i, p in enumerate(prompts)]


def probe_table(probes: list[dict], a: str, b: str) -> Table:
    table = Table("prompt", a, b, title="probe answers", show_lines=True)
    for row in probes:
        table.add_row(plain(row["prompt"]), plain(row[a]), plain(row[b]))
    return table
