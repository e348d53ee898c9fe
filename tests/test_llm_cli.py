"""`agentcom llm add/list/route/remove`, plain and `--json`, against a running llm-registry and a
fake Ollama."""

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentcom_cli.main import app as cli
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import free_port
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM, serve


async def test_cli_adds_lists_routes_and_removes_an_endpoint(
    settings: CommonSettings, admin_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offset = free_port() - 8103
    llm = LlmSettings.model_validate(
        settings.model_dump()
        | {
            "port_offset": offset,
            "llm_ledger_dir": str(tmp_path / "ledger"),
            "llm_health_interval": timedelta(milliseconds=100),
        }
    )
    for key, value in {
        "AGENTCOM_TOKEN": admin_token,
        "AGENTCOM_PORT_OFFSET": str(offset),
        "AGENTCOM_HOME": str(tmp_path / "home"),
        "OLLAMA_KEY": "sk-from-env",
    }.items():
        monkeypatch.setenv(key, value)
    fake = FakeLLM("gpu1", models=["qwen3:8b"], warm=["qwen3:8b"])
    await fake.start()
    runner = CliRunner()

    async def run(*args: str) -> str:
        result = await asyncio.to_thread(runner.invoke, cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    try:
        async with serve(llm, llm.port("llm-registry")):
            added = await run(
                "llm",
                "add",
                "gpu1",
                "ollama",
                fake.url,
                "--class",
                "local",
                "--api-key-env",
                "OLLAMA_KEY",
            )
            assert "endpoint gpu1 added; health healthy" in added
            again = json.loads(
                await run(
                    "llm", "add", "cpu1", "ollama", fake.url, "--class", "local-small", "--json"
                )
            )
            assert (again["id"], again["health"], again["classes"]) == (
                "cpu1", "healthy", ["local-small"]
            )  # fmt: skip
            assert json.loads(await run("llm", "remove", "cpu1", "--json")) == {
                "endpoint_id": "cpu1",
                "removed": True,
            }
            listed = json.loads(await run("llm", "list", "--json"))
            assert [(e["id"], e["health"], e["warm_models"]) for e in listed] == [
                ("gpu1", "healthy", ["qwen3:8b"])
            ]
            assert "sk-from-env" not in json.dumps(listed)
            route = json.loads(await run("llm", "route", "standard", "--json"))
            assert (route["endpoint_id"], route["model"]) == ("gpu1", "qwen3:8b")
            shown = await run("llm", "route", "standard")
            assert shown.startswith("standard -> gpu1 qwen3:8b\n"), shown
            assert f"reason: {route['reason']}" in " ".join(shown.split()), shown
            assert "chosen" in shown, shown
            named = json.loads(
                await run("llm", "route", "trivial", "--model", "qwen3:8b", "--json")
            )
            assert (named["requested_model"], named["endpoint_id"]) == ("qwen3:8b", "gpu1"), named
            assert "removed gpu1" in await run("llm", "remove", "gpu1")
            assert json.loads(await run("llm", "list", "--json")) == []
    finally:
        await fake.stop()
