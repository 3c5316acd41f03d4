"""Who may post: loopback by default; anywhere else only with a bearer token.

In: the address the HTTP server binds, the token's source (the environment variable
`RECTIFY_SERVE_TOKEN` or a file), a request's `Authorization` header. Out: the token (or None),
whether a request may write (compared in constant time), or `TokenError` saying what is missing.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

TOKEN_ENV = "RECTIFY_SERVE_TOKEN"
MIN_TOKEN_LENGTH = 16


class TokenError(ValueError):
    """No usable token where one is needed (the message says what to do)."""


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) can be reached from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_token(host: str, token_file: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The token posts must carry: from `token_file`, else from RECTIFY_SERVE_TOKEN, else None.

    Raises TokenError when the server binds beyond loopback without one, or the token is
    shorter than 16 characters."""
    env = os.environ if environ is None else environ
    token: str | None = None
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TokenError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        if not token:
            raise TokenError(f"the token file {token_file} is empty")
    elif env.get(TOKEN_ENV):
        token = env[TOKEN_ENV].strip()
    if token is None:
        if not is_loopback(host):
            raise TokenError(f"--http {host} is reachable beyond this machine: POST needs a token; set {TOKEN_ENV} "
                             "or --token-file FILE (or bind 127.0.0.1)")
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"the token must have at least {MIN_TOKEN_LENGTH} characters")
    return token


def authorised(token: str | None, header: str | None) -> bool:
    """Whether an `Authorization` header carries the token (`Bearer TOKEN`); always, without a token."""
    if token is None:
        return True
    if header is None:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))
