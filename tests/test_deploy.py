"""compose.yaml and deploy/k8s are checked without a container engine: schemas + consistency."""

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agentcom_common.settings import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.31.0"


def _compose_schema() -> dict[str, Any]:
    # the Compose Specification schema as vendored (with its license) by check-jsonschema
    text = (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    return json.loads(text)


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _manifests() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def test_compose_file_follows_the_compose_specification() -> None:
    jsonschema.validate(_compose(), _compose_schema())


def test_a_misspelt_compose_key_is_caught_by_the_same_check() -> None:
    broken = _compose()
    broken["services"]["queue"]["helthcheck"] = broken["services"]["queue"].pop("healthcheck")

    with pytest.raises(jsonschema.ValidationError, match="helthcheck"):
        jsonschema.validate(broken, _compose_schema())


def test_compose_runs_every_service_from_one_image_with_readiness() -> None:
    services = _compose()["services"]
    ours = {name: services[name] for name in SERVICE_NAMES}

    assert {s["image"] for s in ours.values()} == {"agentcom:latest"}
    for name, service in ours.items():
        env = service["environment"]
        assert env["AGENTCOM_SERVICE"] == name
        assert env["AGENTCOM_NATS_URL"].startswith("nats://")
        assert env["AGENTCOM_DATABASE_URL"].startswith("postgresql://")
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert {"nats", "postgres", "otel-collector", "grafana"} <= set(services)
    assert "-js" in services["nats"]["command"]


@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml")))
def test_each_manifest_is_valid_kubernetes(path: str) -> None:
    for document in yaml.safe_load_all((K8S / path).read_text()):
        if document and document.get("kind") != "Kustomization":
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_a_misspelt_manifest_field_is_caught_by_the_same_check() -> None:
    deployment = next(d for d in _manifests() if d["kind"] == "Deployment")
    deployment["spec"]["replicaz"] = 2

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_kubernetes_runs_the_same_services_with_probes() -> None:
    deployments = {d["metadata"]["name"]: d for d in _manifests() if d["kind"] == "Deployment"}

    assert set(deployments) == set(SERVICE_NAMES)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "agentcom:latest"
        assert {"name": "AGENTCOM_SERVICE", "value": name} in container["env"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])

    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
