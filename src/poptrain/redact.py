"""URLs as people may see them: a storage, checkpoint or tracking URL never shows its password.

The one rule for every page, message, log line, report and written spec: the password of
`scheme://user:PASSWORD@host` and the value of a secret query parameter (`?password=`,
`?secret=`, `?token=`, `...key=`) are replaced by `***` where shown (`shown`, `scrub`) and left
out where written for later use (`without_password`). It imports nothing of poptrain, so every
layer can use it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

MASK = "***"
STORAGE_ENV = "POPTRAIN_STORAGE"  # the storage URL, password included, when neither --storage nor a spec gives it

# scheme://user:password@ -- the password runs to the last '@' before a space, quote, '?' or '#'
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:'\"]*):(?P<password>[^\s?#'\"]*)@")
_SECRET_NAME = r"[^=&\s#'\"]*(?:password|passwd|pwd|secret|token|key|credential)[^=&\s#'\"]*"
_SECRET_PARAM = re.compile(rf"(?P<head>[?&]{_SECRET_NAME}=)(?P<value>[^&\s#'\"]*)", re.IGNORECASE)


def scrub(text: str) -> str:
    """`text` with the password of every URL in it (and every secret query value) replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['head']}{MASK}", text)


def shown(url: str | None) -> str:
    """A storage, checkpoint or tracking URL for people: `postgresql://user:***@host/db` (no URL: '')."""
    return "" if url is None else scrub(str(url))


def without_password(url: str) -> str:
    """The URL with its password and secret query values left out, e.g. for a spec written to a file or a store."""
    url = _USERINFO.sub(lambda m: f"{m['head']}@", url)
    base, mark, query = url.partition("?")
    if not mark:
        return url
    secret = re.compile(rf"^{_SECRET_NAME}$", re.IGNORECASE)
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not secret.match(k)]
    return f"{base}?{urlencode(kept)}" if kept else base


def has_password(url: str) -> bool:
    """Whether the URL carries a password or a secret query value that `without_password` leaves out."""
    return without_password(url) != url


def masked(text: str, url: str) -> str:
    """`text` with the password of `url` shown as `***`, in the URL and wherever a message quotes it alone."""
    text = scrub(text)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return text
    if not password:
        return text
    for secret in {password, unquote(password)}:
        text = text.replace(f":{secret}@", ":***@")
        if len(secret) >= 4:  # a longer password is masked wherever a message quotes it
            text = text.replace(secret, "***")
    return text
