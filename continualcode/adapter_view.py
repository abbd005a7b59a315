"""Rich tables for adapter versions: shared by /adapters, /diff and `continualcode adapters`."""

from __future__ import annotations

from rich.table import Table

from .adapters import AdapterRegistry


def versions_rows(registry: AdapterRegistry) -> list[dict]:
    return [v.to_json() for v in registry.list()]


def versions_table(registry: AdapterRegistry) -> Table:
    table = Table("", "version", "parent", "created", "commit", "examples", "gate")
    rows = versions_rows(registry)
    for r in rows:
        gate = r["decision"] or ""
        if r["reason"]:
            gate += f" ({r['reason']})"
        if r["corrupt"]:
            gate = f"[red]corrupt: {r['corrupt']}[/red]"
        table.add_row("*" if r["live"] else "", r["version"], r["parent"] or "base", str(r["created"])[:19],
                      (r["commit"] or "")[:10], str(r["n_examples"]), gate)
    if not rows:
        table.caption = "no adapter versions yet: the base model is serving"
    return table


def diff_table(registry: AdapterRegistry, store, a: str, b: str) -> Table:
    diff = registry.diff(a, b)
    table = Table("module", "‖ΔW_b − ΔW_a‖", title=f"{diff.a or 'base'} → {diff.b or 'base'}")
    for module, norm in sorted(diff.module_norms.items(), key=lambda kv: -kv[1])[:15]:
        table.add_row(module, f"{norm:.4g}")
    for side, ids in (("learned only by " + str(diff.a or "base"), diff.only_a),
                      ("learned only by " + str(diff.b or "base"), diff.only_b)):
        texts = []
        for example_id in list(ids)[:5]:
            row = store.example(example_id) if store is not None else None
            texts.append(f"#{example_id} " + ((row or {}).get("f") or "")[:80].replace("\n", " "))
        table.add_row(side, "\n".join(texts) or "-")
    return table
