"""The llm-registry wheel ships runtime code only: the fake upstreams live in tests/servers."""

import importlib.util


def test_the_fake_upstreams_are_not_in_the_runtime_package() -> None:
    assert importlib.util.find_spec("agentcom_llm_registry.testing") is None
    assert importlib.util.find_spec("fake_llm") is not None  # tests/servers, for the tests
