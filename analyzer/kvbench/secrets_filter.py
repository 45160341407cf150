"""Keep secrets out of what kvbench hands to other systems (MLflow params, tags and artifact copies).

The records should hold no secret in the first place (passwords live in 0600 files on the hosts); this is
the second line: any key whose name looks like a credential is dropped, and any credentials written into a
URL (`redis://:pw@host`) are masked, wherever they sit in a document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Words of a name that name a credential (hf_token, REDIS_PASSWORD, apiKey, secret_key, ...). Plurals
# such as prompt_tokens or index_keys are counts, not credentials, and stay.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "token", "secret", "credential", "credentials", "apikey", "cookie", "key"}
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s]*:[^/@\s]*)@")
MASK = "***"


def is_secret_name(name: str) -> bool:
    """True when a word of the name (split at _ . - / and camelCase) names a credential."""
    return any(word.lower() in _SECRET_WORDS for word in _WORD.findall(name))


def mask_urls(text: str) -> str:
    """`redis://user:pw@host` -> `redis://***@host`."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def redact(document: Any) -> Any:
    """A copy of a JSON-like document without credential-named keys and with URL credentials masked.
    Strings of argv lists are masked too; an argv element after a `--password`-like flag is dropped."""
    if isinstance(document, Mapping):
        return {key: redact(value) for key, value in document.items() if not is_secret_name(str(key))}
    if isinstance(document, list):
        kept: list[Any] = []
        skip_next = False
        for item in document:
            if skip_next:
                skip_next = False
                kept.append(MASK)
                continue
            if isinstance(item, str) and item.startswith("-") and is_secret_name(item.lstrip("-")):
                skip_next = "=" not in item
                kept.append(item.split("=", 1)[0] + ("=" + MASK if "=" in item else ""))
                continue
            kept.append(redact(item))
        return kept
    if isinstance(document, str):
        return mask_urls(document)
    return document
