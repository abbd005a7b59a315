"""A prompt and the regexes its answer must and must not match: the learning bench's items and the
promotion gate's probes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Check:
    """A prompt and what its answer must (pass_regex, all of them) and must not (fail_regex) match.

    Patterns use Python ``re.search`` with no implicit flags (write ``(?i)``,
    ``(?m)``, ``(?s)`` inline). An empty or whitespace-only answer always
    fails, so a policy collapsed to empty output cannot pass a fail-only check.
    The promotion gate's probes are Checks too.
    """

    messages: list[dict]
    pass_regex: list[str] = field(default_factory=list)
    fail_regex: list[str] = field(default_factory=list)

    def passes(self, text: str) -> bool:
        if not text.strip():
            return False
        return (all(re.search(p, text) for p in self.pass_regex)
                and not any(re.search(p, text) for p in self.fail_regex))
