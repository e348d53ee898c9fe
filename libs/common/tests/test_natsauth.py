import json
import stat
from pathlib import Path

import pytest

from agentcom_common import natsauth


def test_a_signed_jwt_carries_the_claims_and_the_issuers_public_key() -> None:
    seed = natsauth.new_account_seed()

    token = natsauth.encode_jwt({"sub": "UABC", "nats": {"type": "user"}}, seed)
    claims = natsauth.decode_claims(token)

    assert seed.startswith("SA")
    assert natsauth.public_key(seed).startswith("A")
    assert claims["iss"] == natsauth.public_key(seed)
    assert claims["sub"] == "UABC"
    assert claims["jti"]
    with pytest.raises(ValueError, match="not a JWT"):
        natsauth.decode_claims("nope")


def test_urls_get_credentials_and_lose_them_for_printing() -> None:
    url = natsauth.with_credentials("nats://127.0.0.1:4222", "hub", "p@ss/word")

    assert url == "nats://hub:p%40ss%2Fword@127.0.0.1:4222"
    assert natsauth.redact(url) == "nats://***@127.0.0.1:4222"
    assert natsauth.strip_credentials(url) == "nats://127.0.0.1:4222"
    assert natsauth.redact("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_server_auth_is_created_once_secret_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "nats-auth.json"

    first = natsauth.ServerAuth.load_or_create(path)
    again = natsauth.ServerAuth.load_or_create(path)

    assert first == again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["hub_password"] == first.hub_password
    config = first.config()
    assert f"issuer: {first.issuer}" in config
    assert "auth_users: [ hub ]" in config
    assert first.issuer_seed not in config  # the seed stays with the scheduler
