"""Remove secrets from text before it is kept for training.

Training examples outlive the session that produced them: they are replayed
into optimizer steps and their effect ends up in adapter weights that may be
shared. A key pasted into a prompt or printed by `env` must not be learned, so
`Store.add_example` runs every text field through `redact`.

Two kinds of patterns:

- shapes that are secrets wherever they appear (AWS access key ids, GitHub,
  OpenAI/Anthropic, Slack, Stripe and Google keys, JWTs, PEM private key
  blocks, bearer tokens, passwords inside URLs);
- assignments whose *name* says secret (`API_KEY=...`, `password: ...`,
  `"token": "..."`). Code that merely handles secrets should still be
  learnable, so the value is kept when it is plainly code, not a secret: a type
  (`token: str`), a literal like `None`, a call or lookup
  (`token = os.environ["T"]`, `password=get_password()`).

Over-redaction costs a little training signal; under-redaction leaks a secret,
so unclear cases are redacted. `redact` is idempotent.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

_PEM_PRIVATE_KEY = re.compile(
    # An unterminated block (output cut off mid-key) is redacted to the end.
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*)",
    re.DOTALL,
)

# Secrets recognisable by their shape alone.
_SHAPES = [
    re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"),  # AWS key ids
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),  # GitHub classic tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}"),  # GitHub fine-grained tokens
    re.compile(r"(?<![A-Za-z0-9_-])sk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}"),  # OpenAI, Anthropic (sk-ant-...)
    re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),  # Stripe
    re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{10,}"),  # Slack tokens
    re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),  # Slack webhooks
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API keys
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWTs
]

# A bearer/basic credential: must contain a digit, so prose ("Basic authentication") survives.
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)(?=[A-Za-z0-9._~+/=-]*\d)([A-Za-z0-9._~+/=-]{12,})")
_URL_PASSWORD = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^/\s:@]+:)(?!\[REDACTED\]@)[^/\s@]+@")

# NAME <sep> VALUE where NAME ends in a secret-ish word (`max_tokens` and
# `tokenizer` do not); `["']?` lets JSON keys match. The name starts only where
# a run of name characters starts: a `\b` there would let the search restart
# inside every `a-b-c-...` run and take quadratic time on long ones.
_SECRET_WORD = r"(?:api[_-]?key|access[_-]?key|secret(?:[_-]?key)?|token|passw(?:or)?d|_pass|pwd|credentials?)"
_ASSIGNMENT = re.compile(
    rf"""(?ix)
    (?<![a-z0-9_.-])(?P<name>[a-z0-9_.-]*?{_SECRET_WORD}["']?)
    (?P<sep>\s*(?::=|=>|[:=])\s*)
    (?P<value>\[REDACTED\]|"[^"\n]*"|'[^'\n]*'|[^\s,;&)}}\]]+)
    """
)

# A value made only of one of these words is a type or a literal, not a secret.
_CODE_WORDS = {
    "str", "string", "int", "bytes", "bool", "float", "none", "null", "nil",
    "true", "false", "optional", "any", "dict", "list", "secretstr", "undefined",
    "required", "[redacted]", "",
}
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_VARIABLE_WORD = re.compile(r"(?i)token|key|secret|passw|pwd|cred")
_VARIABLE_NAMES = {"token", "key", "secret", "password", "passwd", "pwd", "credential", "credentials"}


def _is_code(value: str) -> bool:
    """True when `value` reads as a program expression rather than a secret.

    `token: str`, `token = None`, `key = os.environ["K"]`, `password=get_pw()`,
    `api_key=api_key` and `$TOKEN` are code; `hunter2`, `"abc123"` are not.
    """
    if value.strip("\"'").strip().lower() in _CODE_WORDS:
        return True
    if value[:1] in "\"'":
        return False  # a quoted literal is the secret itself
    if value.startswith(("$", "{", "<", "%")):
        return True  # $VAR, ${VAR}, {{ var }}, <your-key>: references and placeholders
    head = _IDENTIFIER.match(value)
    if head is None:
        return False
    rest = value[head.end():]
    if rest[:1] in ("(", "[", ".", "|") and not rest.startswith(".."):
        return True  # a call, a lookup, attribute access, a union type
    word = head.group(0)
    if rest == "" and _VARIABLE_WORD.search(word):
        # `token=token`, `api_key=api_key`, `apiKey: apiKey`: passing a variable on
        # (a bare lowercase word like `supersecret` is still treated as a secret).
        return "_" in word or re.search(r"[a-z][A-Z]", word) is not None or word.lower() in _VARIABLE_NAMES
    return False


def _redact_assignment(match: re.Match[str]) -> str:
    value = match.group("value")
    if _is_code(value):
        return match.group(0)
    quote = value[0] if value[:1] in "\"'" else ""
    return f"{match.group('name')}{match.group('sep')}{quote}{REDACTED}{quote}"


def redact(text: str) -> str:
    """Return `text` with every recognised secret replaced by `[REDACTED]`."""
    text = _PEM_PRIVATE_KEY.sub(REDACTED, text)
    for shape in _SHAPES:
        text = shape.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _ASSIGNMENT.sub(_redact_assignment, text)
