"""`agentcom status`'s Postgres probe against the real server, without SQLAlchemy."""

from urllib.parse import urlsplit, urlunsplit

from agentcom_cli import probes


async def test_postgres_probe_says_ok_for_a_live_database(db_url: str) -> None:
    found = await probes.postgres_ok(db_url)
    assert (found.ok, found.detail) == (True, "accepting connections")
    assert "@" not in found.url  # no login shown


async def test_postgres_probe_says_down_for_a_missing_database(db_url: str) -> None:
    parts = urlsplit(db_url)
    missing = urlunsplit(parts._replace(path="/no_such_db"))
    found = await probes.postgres_ok(missing)
    assert not found.ok
    assert found.detail == "unreachable (InvalidCatalogNameError)", found  # reached; no such db
