from datetime import timedelta

import pytest
from pydantic import ValidationError

from agentcom_common.settings import CommonSettings


def test_values_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTCOM_PORT_OFFSET", "100")
    monkeypatch.setenv("AGENTCOM_OUTBOX_INTERVAL", "0.05")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")

    settings = CommonSettings()

    assert settings.port("queue") == 8201
    assert settings.nats_client_port == 4322
    assert settings.outbox_interval == timedelta(milliseconds=50)
    assert settings.otel_endpoint == "http://collector:4318"


def test_a_non_postgres_database_url_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTCOM_DATABASE_URL", "mysql://x@y/z")

    with pytest.raises(ValidationError, match="database_url"):
        CommonSettings()


def test_database_url_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTCOM_DATABASE_URL", "postgresql://app:s3cret-pw@db/x")

    assert "s3cret-pw" not in repr(CommonSettings())


def test_a_token_cache_longer_than_a_minute_is_refused() -> None:
    """The TTL is the bound on a revocation whose event was lost (docs: Security model)."""
    longest = CommonSettings.model_validate({"auth_cache_ttl": "60s"})
    assert longest.auth_cache_ttl.total_seconds() == 60
    with pytest.raises(ValidationError, match="auth_cache_ttl"):
        CommonSettings.model_validate({"auth_cache_ttl": "61s"})
