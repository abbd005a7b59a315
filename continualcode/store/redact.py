"""Remove secrets from text before the store keeps it.

Everything the store writes outlives the session that produced it: messages
are replayed on resume, examples are replayed into optimizer steps and their
effect ends up in adapter weights that may be shared. A key pasted into a
prompt or printed by `env` must not be kept, so the store's row layer
(`continualcode.store.rows.prepare_row`) runs every text column through `redact`.

Three kinds of patterns:

- shapes that are secrets wherever they appear (AWS access key ids, GitHub,
  GitLab, Hugging Face, npm, OpenAI/Anthropic, Slack, Stripe and Google keys,
  JWTs, PEM private key blocks, bearer tokens, passwords inside URLs), and a
  40-character AWS secret key next to an AWS key id or named as one;
- command lines that carry a password: `--password X` (any flag named like a
  secret), `mysql -pX`, `curl -u user:pass`;
- assignments whose *name* says secret (`API_KEY=...`, `password: ...`,
  `"token": "..."`, `AccountKey=...`). Code that merely handles secrets should
  still be learnable, so the value is kept when it is plainly code, not a
  secret: a type (`token: str`), a literal like `None`, a call or lookup
  (`token = os.environ["T"]`, `password=get_password()`), an attribute of a
  config object (`password=settings.db_password`), a variable passed on
  (`api_key=api_key`).

Over-redaction costs a little training signal; under-redaction leaks a secret,
so unclear cases are redacted. `redact` is idempotent and runs in linear time
(every pattern can start only at the beginning of a run of its characters).
"""

from __future__ import annotations

import bisect
import re

REDACTED = "[REDACTED]"
MAX_PASSES = 4

from continualcode.credentials import (
    AWS_KEY_ID,
    AWS_KEY_PREFIXES,
    PEM_PRIVATE_KEY,
    SHAPES,
    URL_PASSWORD,
)

# An AWS secret access key is 40 base64 characters, a shape too common to redact on
# its own (base64 blobs). It is redacted within AWS_SECRET_WINDOW characters of an
# AWS key id or of a name that says "secret access key" (a credentials CSV, `aws
# configure list`, JSON from `aws sts`). Mixed case is required: git hashes are hex.
AWS_SECRET_WINDOW = 100
_AWS_SECRET_NAME = re.compile(r"(?i)secret[_-]?access[_-]?key|aws[_-]?secret")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
                         r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")

# A bearer/basic credential: must contain a digit, so prose ("Basic authentication") survives.
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)(?=[A-Za-z0-9._~+/=-]*\d)([A-Za-z0-9._~+/=-]{12,})")

# Command lines. `mysql -pSECRET` (no space) is the password only after a MySQL
# client; elsewhere `-p8080` is a port and `-p` a flag. `curl -u user:pass` likewise
# only after curl (`docker run -u 1000:1000` is a uid:gid).
_MYSQL = re.compile(r"\b(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlcheck|mysqlshow|mysqlsh|mariadb)\b")
_MYSQL_PASSWORD = re.compile(r"(?<!\S)-p(?P<password>\S+)")
_CURL = re.compile(r"\bcurl\b")
_CURL_USER = re.compile(r"""(?<!\S)(?:-u\s*|--user[\s=]+)["']?[^\s:"']*:(?P<password>[^\s"']+)""")
_COMMAND_PASSWORDS = ((_MYSQL, _MYSQL_PASSWORD), (_CURL, _CURL_USER))

# NAME <sep> VALUE where NAME ends in a secret-ish word (`max_tokens` and
# `tokenizer` do not); `["']?` lets JSON keys match. The name starts only where a
# run of name characters starts (a `\b` there would let the search restart inside
# every `a-b-c-...` run: quadratic), takes the whole run possessively, and is then
# checked once for a secret ending by lookbehinds (trying a list of words at every
# character of every word made the scan 2-3x slower).
_KEY_KINDS = ("api", "access", "account", "private", "signing", "encryption", "secret")
_SECRET_ENDINGS = sorted({f"{kind}{sep}key" for kind in _KEY_KINDS for sep in ("", "_", "-")}
                         | {"secret", "token", "password", "passwd", "passphrase", "_pass", "pwd",
                            "credential", "credentials"})
_SECRET_WORD = "(?:" + "|".join(sorted(_SECRET_ENDINGS, key=len, reverse=True)) + ")"  # longest first
_SECRET_WORD_IN_NAME = re.compile(f"(?i){_SECRET_WORD}")
_ENDS_IN_SECRET_WORD = "(?:" + "|".join(f"(?<={word})" for word in _SECRET_ENDINGS) + ")"
_ASSIGNMENT = re.compile(
    rf"""(?ix)
    (?<![a-z0-9_.-])(?P<name>[a-z0-9_.-]++{_ENDS_IN_SECRET_WORD}["']?)
    (?P<sep>\s*(?::=|=>|[:=](?!=))\s*)
    (?P<value>\[REDACTED\]|"[^"\n]*"|'[^'\n]*'|[^\s,;&)}}\]]+)
    """
)
# `--password VALUE`, `-storepass VALUE` (the `=` form is an assignment above).
_FLAG_ENDINGS = sorted({w.replace("_", "-") for w in _SECRET_ENDINGS if not w.startswith("_")} | {"pass"})
_FLAG = re.compile(
    rf"""(?ix)
    (?<![\w-])(?P<name>--?[a-z0-9][a-z0-9-]*+(?:{"|".join(f"(?<={w})" for w in _FLAG_ENDINGS)}))
    (?P<sep>[ \t]+)
    (?P<value>\[REDACTED\]|"[^"\n]*"|'[^'\n]*'|[^\s"'`\-][^\s`\])]*)
    """
)

# A value made only of one of these words is a type or a literal, not a secret.
_CODE_WORDS = {
    "str", "string", "int", "bytes", "bool", "float", "none", "null", "nil",
    "true", "false", "optional", "any", "dict", "list", "secretstr", "undefined",
    "required", "[redacted]", "",
}
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_ATTRIBUTE_CHAIN = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]*")
_VARIABLE_WORD = re.compile(r"(?i)token|key|secret|passw|pwd|cred")
_VARIABLE_NAMES = {"token", "key", "secret", "password", "passwd", "pwd", "credential", "credentials"}
# Objects whose attributes are looked up, not written out: `password=settings.db`.
_CONFIG_OBJECTS = {"self", "cls", "this", "os", "settings", "config", "cfg", "conf", "args", "options",
                   "opts", "env", "environ", "params", "ctx", "context", "request", "secrets", "process",
                   "creds", "credentials", "app", "vault"}


def _secret_word(name: str) -> str:
    found = _SECRET_WORD_IN_NAME.search(name)
    return re.sub(r"[_-]", "", found.group(0).lower()) if found else ""


def _is_code(value: str, name: str = "") -> bool:
    """True when `value` (assigned to `name`) reads as a program expression rather than a secret.

    `token: str`, `token = None`, `key = os.environ["K"]`, `password=get_pw()`,
    `password=settings.db_password`, `api_key=api_key`, `token=access_token` and
    `$TOKEN` are code; `hunter2`, `"abc123"`, `correct.horse.battery`, `hunter2.`,
    `abc|def1` and `django_insecure_key_1` are not.
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
    word, rest = head.group(0), value[head.end():]
    if rest[:1] in ("(", "["):
        return True  # a call or a lookup
    if rest[:1] == ".":
        return _is_attribute(value)
    if rest[:1] == "|":  # a union type: every part a type
        return all(part.lower() in _CODE_WORDS or _TYPE_NAME.fullmatch(part) for part in value.split("|"))
    if rest == "" and _VARIABLE_WORD.search(word):
        # `token=token`, `api_key=api_key`, `apiKey: apiKey`, `token=access_token`: passing a
        # variable on (`SECRET_KEY=django_insecure_key_1` does not repeat the name's word).
        own = _secret_word(name)
        return word.lower() in _VARIABLE_NAMES or (bool(own) and own in re.sub(r"[_-]", "", word.lower()))
    return False


def _is_attribute(value: str) -> bool:
    """`config.get(...)`, `os.environ[...]`, `settings.API_KEY`, `self.token`: code.
    `correct.horse.battery`, `abc.def.ghi`, `hunter2.` (a sentence's period): secrets."""
    chain = _ATTRIBUTE_CHAIN.match(value)
    if chain is None:
        return False
    after = value[chain.end():]
    if after[:1] in ("(", "["):
        return True
    if after not in ("", "."):
        return False
    parts = chain.group(0).split(".")
    return parts[0] in _CONFIG_OBJECTS or _VARIABLE_WORD.search(parts[-1]) is not None


def _redact_assignment(match: re.Match[str]) -> str:
    """NAME=VALUE or --flag VALUE: redact VALUE unless it is code (quotes are kept)."""
    value = match.group("value")
    if _is_code(value, match.group("name")):
        return match.group(0)
    quote = value[0] if value[:1] in "\"'" else ""
    return f"{match.group('name')}{match.group('sep')}{quote}{REDACTED}{quote}"


def _redact_aws_secrets(text: str) -> str:
    if not _contains(text, AWS_KEY_PREFIXES) and not _contains(text.lower(), ("access", "aws")):
        return text
    anchors = sorted([m.start() for m in AWS_KEY_ID.finditer(text)]
                     + [m.start() for m in _AWS_SECRET_NAME.finditer(text)])
    if not anchors:
        return text

    def near(match: re.Match[str]) -> bool:
        i = bisect.bisect_left(anchors, match.start() - AWS_SECRET_WINDOW)
        return i < len(anchors) and anchors[i] <= match.end() + AWS_SECRET_WINDOW

    return _AWS_SECRET.sub(lambda m: REDACTED if near(m) else m.group(0), text)


def _redact_command_lines(text: str) -> str:
    """`mysql ... -pSECRET` and `curl ... -u user:SECRET`: only after the command, on its line."""
    if "mysql" not in text and "mariadb" not in text and "curl" not in text:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        for command, password in _COMMAND_PASSWORDS:
            found = command.search(line)
            if found is not None:
                line = line[:found.end()] + password.sub(_redact_password, line[found.end():])
        lines[i] = line
    return "\n".join(lines)


def _redact_password(match: re.Match[str]) -> str:
    """Keep what precedes the `password` group (`-p`, `-u user:`), redact the group."""
    if match.group("password").startswith((REDACTED, "$")):
        return match.group(0)  # already redacted, or a $VARIABLE
    return match.group(0)[: match.start("password") - match.start()] + REDACTED


def redact(text: str) -> str:
    """Return `text` with every recognised secret replaced by `[REDACTED]`.

    Patterns overlap (a flag's value may hide the next flag, a redacted
    assignment may expose one), so passes repeat until nothing changes: text
    without secrets takes one pass, text with secrets usually two.
    """
    for _ in range(MAX_PASSES):
        redacted = _redact_once(text)
        if redacted == text:
            break
        text = redacted
    return text


def _redact_once(text: str) -> str:
    if "PRIVATE KEY" in text:
        text = PEM_PRIVATE_KEY.sub(REDACTED, text)
    text = _redact_aws_secrets(text)  # before the key ids that anchor them are redacted
    for literals, shape in SHAPES:
        if _contains(text, literals):
            text = shape.sub(REDACTED, text)
    if _contains(text.lower(), ("bearer", "basic")):
        text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    if "://" in text:
        text = URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _redact_command_lines(text)
    text = _FLAG.sub(_redact_assignment, text)
    return _ASSIGNMENT.sub(_redact_assignment, text)


def _contains(text: str, literals: tuple[str, ...]) -> bool:
    return any(literal in text for literal in literals)
