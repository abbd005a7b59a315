"""What a credential looks like: the one list of shapes, shared by the environment scrub
(continualcode.process: a variable whose value has one of these shapes is not passed to commands)
and by redaction (continualcode.store.redact: text kept in the store is scrubbed of them).

Each shape comes with the literals one of which every match contains, so a
substring test can skip the regular expression on the common text that holds none.
"""

from __future__ import annotations

import re

PEM_PRIVATE_KEY = re.compile(
    # An unterminated block (output cut off mid-key) is redacted to the end.
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*)",
    re.DOTALL,
)

AWS_KEY_PREFIXES = ("AKIA", "ASIA", "AIDA", "AROA", "AGPA", "ANPA", "ANVA", "AIPA")
AWS_KEY_ID = re.compile(rf"\b(?:{'|'.join(AWS_KEY_PREFIXES)})[0-9A-Z]{{16}}\b")

# Secrets recognisable by their shape alone, each with the literals one of which every
# match contains: a substring test skips the scan (most texts hold none of them).
SHAPES = [
    (AWS_KEY_PREFIXES, AWS_KEY_ID),
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),  # GitHub classic
    (("github_pat_",), re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),  # GitHub fine-grained tokens
    (("gl",), re.compile(r"\bgl(?:pat|dt|rt|ptt|cbt|ft|soat)-[A-Za-z0-9_-]{20,}")),  # GitLab tokens
    (("hf_",), re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),  # Hugging Face (hf_ + 34 letters)
    (("npm_",), re.compile(r"\bnpm_[A-Za-z0-9]{30,}\b")),  # npm (npm_ + 36)
    (("sk-",), re.compile(r"(?<![A-Za-z0-9_-])sk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}")),  # OpenAI, Anthropic
    (("k_live_", "k_test_"), re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}")),  # Stripe
    (("xox",), re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{10,}")),  # Slack tokens
    (("hooks.slack.com",), re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+")),  # Slack webhooks
    (("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),  # Google API keys
    (("eyJ",), re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),  # JWTs
]

URL_PASSWORD = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^/\s:@]+:)(?!\[REDACTED\]@)[^/\s@]+@")


def looks_like_credential(value: str) -> bool:
    """True when `value` contains a private key, a known token shape or a URL with a password."""
    if PEM_PRIVATE_KEY.search(value) or URL_PASSWORD.search(value):
        return True
    return any(any(literal in value for literal in literals) and shape.search(value) for literals, shape in SHAPES)
