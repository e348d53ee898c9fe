"""The sidecar package ships runtime code only: test servers live in the tests."""

import ast
import importlib.util
from pathlib import Path

import agentcom_sidecar

TEST_ONLY = ("agentcom_common.testing", "uvicorn", "starlette", "pytest")


def test_the_fake_model_server_is_not_in_the_runtime_package() -> None:
    assert importlib.util.find_spec("agentcom_sidecar.agentic.fake_ollama") is None
    assert importlib.util.find_spec("fake_ollama") is not None  # tests/servers, for the tests


def test_no_sidecar_module_imports_test_only_code() -> None:
    root = Path(agentcom_sidecar.__file__).parent
    offenders: list[str] = []
    for source in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{source.relative_to(root)}: {name}"
                for name in names
                if name.startswith(TEST_ONLY)
            ]
    assert offenders == []
