"""GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.

The comparison is `hmac.compare_digest`, so how long it takes says nothing about how much of a
forged signature was right. The secret is a `SecretStr` until this module; it is never logged.
"""

import hashlib
import hmac
from collections.abc import Mapping

from pydantic import SecretStr

PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header value GitHub would send for `body` (tests and tools sign with it)."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def secret_for(
    repo: str | None, shared: SecretStr | None, per_repo: Mapping[str, SecretStr]
) -> SecretStr | None:
    """A repo named in `per_repo` is checked against its own secret only, else `shared`."""
    if repo is not None and repo in per_repo:
        return per_repo[repo]
    return shared


def matches(secret: SecretStr, body: bytes, header: str) -> bool:
    expected = sign(secret.get_secret_value(), body)
    return hmac.compare_digest(expected.encode(), header.strip().encode())
