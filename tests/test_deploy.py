"""compose.yaml, the Dockerfile and deploy/k8s, checked without a container engine.

Schemas first (the official Compose Specification, Kubernetes' own OpenAPI schemas through
kubernetes-validate in strict mode), each with a negative case proving the check bites; then
consistency: both deployments run exactly `SERVICE_NAMES` from one image, wired to NATS and
Postgres, probed on `/readyz`, on the ports the settings give them.
"""

import asyncio
import copy
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
import yaml
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from agentcom_common import embedded, messaging, natsauth
from agentcom_common.settings import SERVICE_NAMES, CommonSettings
from agentcom_common.testing import eventually, free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SECRET_TEMPLATE = "secret.yaml"
MANIFESTS = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# the oldest Kubernetes we claim to support, and the newest kubernetes-validate ships
K8S_VERSIONS = list(dict.fromkeys(("1.31.0", kubernetes_validate.latest_version())))


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _compose() -> dict[str, Any]:
    return _yaml(ROOT / "compose.yaml")


def _compose_validator() -> Validator:
    # the Compose Specification schema (compose-spec/compose-spec, Apache-2.0) as vendored,
    # with its license, by check-jsonschema (a dev dependency)
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    validator = validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def _compose_errors(document: dict[str, Any]) -> list[str]:
    return [
        f"/{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in _compose_validator().iter_errors(document)
    ]


def _interpolated(value: str) -> str:
    """`value` with every `${VAR…}` replaced by a URL-safe stand-in, as compose would fill it."""
    return re.sub(r"\$\{[^}]*\}", "filled", value)


def _port(service: str) -> int:
    return CommonSettings.model_construct().port(service)  # the defaults, whatever the env says


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s (the Secret template included), by kind and name."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for name in MANIFESTS:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = document
    return objects


def _dockerfile_user() -> int:
    (user,) = re.findall(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    return int(user)


# --- Compose: the specification ------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    assert _compose_errors(_compose()) == []


def _misspelt_key(doc: dict[str, Any]) -> None:
    queue = doc["services"]["queue"]
    queue["helthcheck"] = queue.pop("healthcheck")


def _unknown_condition(doc: dict[str, Any]) -> None:
    doc["services"]["queue"]["depends_on"]["nats"]["condition"] = "service_heathy"


def _misspelt_top_level(doc: dict[str, Any]) -> None:
    doc["volume"] = doc.pop("volumes")


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        (_misspelt_key, "helthcheck"),
        (_unknown_condition, "service_heathy"),
        (_misspelt_top_level, "'volume'"),
    ],
    ids=["misspelt-service-key", "unknown-depends-on-condition", "misspelt-top-level-key"],
)
def test_a_broken_compose_file_fails_the_same_check(
    breakage: Callable[[dict[str, Any]], None], named: str
) -> None:
    broken = _compose()
    breakage(broken)

    errors = _compose_errors(broken)

    assert errors
    assert any(named in error for error in errors), errors


# --- Compose: consistency ------------------------------------------------------------------


def test_compose_builds_exactly_the_five_services_from_one_image() -> None:
    services = _compose()["services"]

    assert {name for name, service in services.items() if "build" in service} == set(SERVICE_NAMES)
    assert {services[name]["build"] for name in SERVICE_NAMES} == {"."}
    assert len({services[name]["image"] for name in SERVICE_NAMES}) == 1


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_compose_service_is_wired_to_nats_postgres_and_its_readiness(name: str) -> None:
    services = _compose()["services"]
    service = services[name]
    env = {key: _interpolated(str(value)) for key, value in service["environment"].items()}
    port = _port(name)

    assert env["AGENTCOM_SERVICE"] == name
    assert env["AGENTCOM_HTTP_HOST"] == "0.0.0.0"
    nats = urlsplit(env["AGENTCOM_NATS_URL"])
    assert (nats.scheme, nats.hostname, nats.port) == ("nats", "nats", 4222)
    database = urlsplit(env["AGENTCOM_DATABASE_URL"])
    assert (database.scheme, database.hostname, database.port) == ("postgresql", "postgres", 5432)
    otel = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert otel.hostname in services
    assert {"nats", "postgres"} <= set(service["depends_on"])
    assert f"{port}:{port}" in service["ports"]
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert f"'http://127.0.0.1:{port}/readyz'" in test[3]


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """A service's dependencies and the condition it waits for (short list form included)."""
    depends_on: list[str] | dict[str, dict[str, str]] = service.get("depends_on", [])
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {target: rule["condition"] for target, rule in depends_on.items()}


def test_compose_waits_only_for_dependencies_that_have_a_health_check() -> None:
    services = _compose()["services"]

    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits on {target}"
    for name in SERVICE_NAMES:
        assert _depends_on(services[name]).items() >= {
            ("nats", "service_healthy"),
            ("postgres", "service_healthy"),
        }


def test_compose_takes_secrets_from_the_environment_only() -> None:
    services = _compose()["services"]

    for name in SERVICE_NAMES:
        env = services[name]["environment"]
        assert re.fullmatch(r"\$\{AGENTCOM_ADMIN_TOKEN:\?[^}]+\}", env["AGENTCOM_ADMIN_TOKEN"])
        assert "${POSTGRES_PASSWORD:?" in env["AGENTCOM_DATABASE_URL"]
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", password)


def test_compose_runs_nats_with_jetstream_on_a_volume_and_postgres_on_a_volume() -> None:
    compose = _compose()
    nats, postgres = compose["services"]["nats"], compose["services"]["postgres"]

    assert "-js" in nats["command"]
    store = nats["command"][nats["command"].index("-sd") + 1]
    assert any(volume.endswith(f":{store}") for volume in nats["volumes"])
    assert any(volume.split(":")[0] in compose["volumes"] for volume in postgres["volumes"])


def test_compose_mounts_only_files_that_exist() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_deploy_wires_every_service_to_prometheus_and_grafana() -> None:
    """The wiring only (ports, names, mounts): that the metrics flow and every dashboard query
    answers is proven against a real Prometheus in tests/test_telemetry.py."""
    services = _compose()["services"]
    collector = _yaml(DEPLOY / "otel-collector.yaml")
    prometheus = _yaml(DEPLOY / "prometheus.yaml")
    datasources = _yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")["datasources"]
    (provider,) = _yaml(DEPLOY / "grafana/provisioning/dashboards/agentcom.yaml")["providers"]

    otlp = urlsplit(str(services["queue"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]))
    receiver = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert (otlp.hostname, receiver) == ("otel-collector", f"0.0.0.0:{otlp.port}")
    for pipeline in collector["service"]["pipelines"].values():
        assert set(pipeline["exporters"]) <= set(collector["exporters"])
        assert set(pipeline["processors"]) <= set(collector["processors"])
    # every service's own /metrics is scraped on the port it listens on
    targets = {
        job["job_name"]: t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    for name, port in {"dashboard": 8100, "queue": 8101, "scheduler": 8102}.items():
        assert targets[name] == f"{name}:{port}"
        assert services[name]["ports"] == [f"{port}:{port}"]
    assert targets["llm-registry"] == "llm-registry:8103"
    assert targets["hubfsm"] == "hubfsm:8104"
    exporter_port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert targets["otel-collector"] == f"otel-collector:{exporter_port}"
    by_type = {d["type"]: d for d in datasources}
    assert urlsplit(str(by_type["prometheus"]["url"])).hostname == "prometheus"
    assert urlsplit(str(by_type["jaeger"]["url"])).hostname == "jaeger"
    assert {"prometheus", "grafana", "jaeger"} <= set(services)
    mounts = services["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    uids = {kind: d["uid"] for kind, d in by_type.items()}
    for board in (DEPLOY / "grafana/dashboards").glob("*.json"):
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel["targets"]:  # each query goes to the data source of its kind
                source = target["datasource"]
                assert uids[source["type"]] == source["uid"], (board.name, panel["title"])
    # the trace dashboard reads Jaeger, which the collector's trace pipeline feeds
    assert "jaeger" in {t["datasource"]["type"] for t in _board("trace.json")}
    traces = collector["service"]["pipelines"]["traces"]["exporters"]
    jaeger = collector["exporters"][next(e for e in traces if e.startswith("otlp/"))]
    assert urlsplit(f"//{jaeger['endpoint']}").hostname == "jaeger"
    kustomized = _yaml(DEPLOY / "grafana/kustomization.yaml")["configMapGenerator"]
    assert sorted(f for g in kustomized for f in g["files"]) == sorted(
        f"dashboards/{p.name}" for p in (DEPLOY / "grafana/dashboards").glob("*.json")
    )


def _board(name: str) -> list[dict[str, Any]]:
    """The targets of every panel of deploy/grafana/dashboards/`name`."""
    panels = json.loads((DEPLOY / "grafana/dashboards" / name).read_text())["panels"]
    return [t for p in panels for t in p["targets"]]


def test_kubernetes_sends_traces_to_a_collector_and_jaeger_as_compose_does() -> None:
    """deploy/k8s/telemetry.yaml: the collector runs deploy/otel-collector.yaml (the file compose
    mounts), the services export to it, and Grafana's k8s data sources carry the uids the
    dashboards name, as compose's do."""
    objects = _objects()
    embedded_config = objects["ConfigMap", "otel-collector-config"]["data"]["config.yaml"]
    assert yaml.safe_load(embedded_config) == _yaml(DEPLOY / "otel-collector.yaml")
    env = objects["ConfigMap", "agentcom-config"]["data"]
    otlp = urlsplit(str(env["OTEL_EXPORTER_OTLP_ENDPOINT"]))
    collector = objects["Service", str(otlp.hostname)]["spec"]["ports"]
    assert otlp.port in {p["port"] for p in collector}
    jaeger = objects["Service", "jaeger"]["spec"]["ports"]
    assert 4317 in {p["port"] for p in jaeger}  # where the collector's otlp/jaeger sends
    compose = _yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")["datasources"]
    k8s = _yaml(DEPLOY / "grafana/datasources.yaml")
    assert k8s["metadata"]["labels"]["grafana_datasource"] == "1"
    provisioned = yaml.safe_load(k8s["data"]["agentcom.yaml"])["datasources"]
    assert {(d["type"], d["uid"]) for d in provisioned} == {(d["type"], d["uid"]) for d in compose}
    assert urlsplit(str(next(d["url"] for d in provisioned if d["type"] == "jaeger"))).port == 16686
    resources = _yaml(DEPLOY / "grafana/kustomization.yaml")["resources"]
    assert resources == ["datasources.yaml"]


class _Ready(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200

    def do_GET(self) -> None:  # the name http.server dispatches to
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()


class _NotReady(_Ready):
    status = 503


def _run_healthcheck(code: str, handler: type[BaseHTTPRequestHandler]) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        local = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", code)
        done = subprocess.run([sys.executable, "-c", local], capture_output=True, timeout=30)
        return done.returncode
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_compose_health_check_passes_on_200_and_fails_on_503(name: str) -> None:
    code = _compose()["services"][name]["healthcheck"]["test"][3]

    assert _run_healthcheck(code, _Ready) == 0
    assert _run_healthcheck(code, _NotReady) != 0


# --- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_installs_the_locked_workspace_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    copied = set(re.findall(r"^COPY\s+(\S+)\s", dockerfile, re.MULTILINE))

    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert "uv sync --frozen --no-dev" in dockerfile
    assert _dockerfile_user() != 0
    assert {member.split("/")[0] for member in workspace["members"]} <= copied


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_service_name_maps_to_a_runnable_module(name: str) -> None:
    # the image runs `python -m agentcom_<AGENTCOM_SERVICE with - as _>`
    assert find_spec(f"agentcom_{name.replace('-', '_')}.__main__") is not None


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".git", ".venv", ".agentcom", ".env"} <= ignored


# --- Kubernetes: the schemas ---------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS)
def test_each_manifest_is_valid_kubernetes(path: str, version: str) -> None:
    documents = list(yaml.safe_load_all((K8S / path).read_text()))

    assert documents
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def _misspelt_field(deployment: dict[str, Any]) -> None:
    deployment["spec"]["replicaz"] = 2


def _port_as_text(deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"


def _misspelt_probe(deployment: dict[str, Any]) -> None:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpget"] = container["readinessProbe"].pop("httpGet")


@pytest.mark.parametrize(
    "breakage",
    [_misspelt_field, _port_as_text, _misspelt_probe],
    ids=["misspelt-field", "port-as-text", "misspelt-probe-field"],
)
def test_a_broken_manifest_fails_the_same_check(
    breakage: Callable[[dict[str, Any]], None],
) -> None:
    deployment = copy.deepcopy(_objects()["Deployment", "queue"])
    kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    breakage(deployment)

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


# --- Kubernetes: consistency ---------------------------------------------------------------


TELEMETRY = ("otel-collector", "jaeger")  # telemetry.yaml's Deployments, beside the services


def _deployments() -> Iterator[dict[str, Any]]:
    """The services' Deployments."""
    return (
        obj
        for (kind, name), obj in _objects().items()
        if kind == "Deployment" and name not in TELEMETRY
    )


def _telemetry() -> dict[str, dict[str, Any]]:
    return {name: _objects()["Deployment", name] for name in TELEMETRY}


def test_kubernetes_deploys_exactly_the_five_services_from_the_compose_image() -> None:
    compose = _compose()["services"]
    images = {
        c["image"] for d in _deployments() for c in d["spec"]["template"]["spec"]["containers"]
    }

    assert {d["metadata"]["name"] for d in _deployments()} == set(SERVICE_NAMES)
    assert images == {compose[name]["image"] for name in SERVICE_NAMES}
    for name in TELEMETRY:  # the collector and Jaeger run compose's images
        (container,) = _telemetry()[name]["spec"]["template"]["spec"]["containers"]
        assert container["image"] == compose[name]["image"]


def _environment(container: dict[str, Any], objects: dict[tuple[str, str], Any]) -> dict[str, str]:
    """What the container sees: its envFrom ConfigMaps and Secrets, then its own env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= objects["ConfigMap", source["configMapRef"]["name"]]["data"]
        else:
            env |= objects["Secret", source["secretRef"]["name"]]["stringData"]
    env |= {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    return env


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_kubernetes_service_is_wired_probed_and_locked_down(name: str) -> None:
    objects = _objects()
    deployment, service = objects["Deployment", name], objects["Service", name]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _environment(container, objects)
    port = _port(name)

    assert env["AGENTCOM_SERVICE"] == name
    assert env["AGENTCOM_HTTP_HOST"] == "0.0.0.0"
    nats, database = urlsplit(env["AGENTCOM_NATS_URL"]), urlsplit(env["AGENTCOM_DATABASE_URL"])
    assert nats.scheme == "nats"
    assert ("Service", nats.hostname) in objects
    assert database.scheme == "postgresql"
    assert ("Service", database.hostname) in objects
    assert "AGENTCOM_ADMIN_TOKEN" in env
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "startupProbe" in container
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _dockerfile_user()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]


def test_kubernetes_runs_nats_and_postgres_like_compose() -> None:
    objects = _objects()
    compose = _compose()["services"]
    nats = objects["StatefulSet", "nats"]["spec"]
    postgres = objects["StatefulSet", "postgres"]["spec"]
    (nats_container,) = nats["template"]["spec"]["containers"]
    (postgres_container,) = postgres["template"]["spec"]["containers"]

    assert nats_container["image"] == compose["nats"]["image"]
    assert postgres_container["image"] == compose["postgres"]["image"]
    assert "-js" in nats_container["args"]
    store = nats_container["args"][nats_container["args"].index("-sd") + 1]
    assert {"name": "data", "mountPath": store} in nats_container["volumeMounts"]
    for spec in (nats, postgres):
        assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["data"]
        assert ("Service", spec["serviceName"]) in objects
        assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_compose_runs_one_of_each_service_by_default() -> None:
    services = _compose()["services"]

    assert {services[name]["deploy"]["replicas"] for name in SERVICE_NAMES} == {1}


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_kubernetes_runs_two_replicas_of_each_service_under_a_disruption_budget(
    name: str,
) -> None:
    """Two pods of every service (they coordinate through Postgres: docs/deploy.md#scaling),
    a rollout that starts a new pod before it stops an old one, and a drain that leaves one."""
    objects = _objects()
    spec = objects["Deployment", name]["spec"]
    budget = objects["PodDisruptionBudget", name]["spec"]
    labels = spec["template"]["metadata"]["labels"]

    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert 0 < budget["minAvailable"] < spec["replicas"]
    (container,) = spec["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # the readiness gate


def test_kubernetes_runs_a_three_node_nats_cluster_and_three_stream_replicas() -> None:
    objects = _objects()
    nats = objects["StatefulSet", "nats"]["spec"]
    (container,) = nats["template"]["spec"]["containers"]
    args = container["args"]
    headless = objects["Service", nats["serviceName"]]["spec"]
    budget = objects["PodDisruptionBudget", "nats"]["spec"]
    config = objects["ConfigMap", "agentcom-config"]["data"]

    assert nats["replicas"] == 3
    assert headless["clusterIP"] == "None"
    assert [p["port"] for p in headless["ports"]] == [6222]
    assert args[args.index("--cluster") + 1] == "nats://0.0.0.0:6222"
    routes = args[args.index("--routes") + 1].split(",")
    assert routes == [f"nats://nats-{i}.{nats['serviceName']}:6222" for i in range(3)]
    # JetStream in a cluster needs a name per node: the pod's own, from the downward API
    assert args[args.index("--server_name") + 1] == "$(POD_NAME)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert int(config["AGENTCOM_NATS_STREAM_REPLICAS"]) == nats["replicas"]
    assert budget["maxUnavailable"] == 1  # two of three keep the quorum
    assert (
        budget["selector"]["matchLabels"].items() <= nats["template"]["metadata"]["labels"].items()
    )


def test_every_object_lives_in_the_agentcom_namespace() -> None:
    objects = _objects()

    assert ("Namespace", "agentcom") in objects
    for (kind, name), obj in objects.items():
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == "agentcom", f"{kind}/{name}"


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    listed = _yaml(K8S / "kustomization.yaml")["resources"]

    assert len(listed) == len(set(listed))
    assert set(listed) == set(MANIFESTS) - {SECRET_TEMPLATE}


def test_the_secret_template_holds_only_placeholders() -> None:
    secret = _objects()["Secret", "agentcom-secrets"]
    values = secret["stringData"]

    assert set(values) == {
        "AGENTCOM_ADMIN_TOKEN",
        "AGENTCOM_DATABASE_URL",
        "POSTGRES_PASSWORD",
        "AGENTCOM_NATS_URL",
        "AGENTCOM_NATS_HUB_PASSWORD",
        "AGENTCOM_NATS_ISSUER",
        "AGENTCOM_SCHEDULER_NATS_ISSUER_SEED",
    }
    assert all("CHANGE-ME" in value for value in values.values())
    # shorter than the 32 characters a token needs: an unedited template cannot seed an admin
    assert len(values["AGENTCOM_ADMIN_TOKEN"]) < 32


def test_nats_runs_with_auth_the_same_way_in_compose_and_kubernetes() -> None:
    compose = _compose()["services"]
    objects = _objects()
    (nats,) = objects["StatefulSet", "nats"]["spec"]["template"]["spec"]["containers"]
    conf = (ROOT / "deploy" / "nats-auth.conf").read_text()

    assert compose["nats"]["command"][:2] == ["-c", "/etc/nats/auth.conf"] == nats["args"][:2]
    assert "./deploy/nats-auth.conf:/etc/nats/auth.conf:ro" in compose["nats"]["volumes"]
    assert objects["ConfigMap", "nats-auth"]["data"]["auth.conf"] == conf
    assert "auth_callout" in conf
    assert "AGENTCOM_NATS_URL" not in objects["ConfigMap", "agentcom-config"]["data"]
    for name in SERVICE_NAMES:
        assert (
            "hub:${AGENTCOM_NATS_HUB_PASSWORD:?"
            in compose[name]["environment"]["AGENTCOM_NATS_URL"]
        )
    seed = compose["scheduler"]["environment"]["AGENTCOM_SCHEDULER_NATS_ISSUER_SEED"]
    assert seed.startswith("${AGENTCOM_SCHEDULER_NATS_ISSUER_SEED:?")


def test_nats_monitoring_is_published_nowhere_and_probed_from_inside() -> None:
    compose = _compose()["services"]["nats"]
    objects = _objects()
    (nats,) = objects["StatefulSet", "nats"]["spec"]["template"]["spec"]["containers"]

    assert not any("8222" in str(port) for port in compose["ports"])
    assert "-m" not in compose["command"]  # `-m 8222` would listen on every interface
    assert "-m" not in nats["args"]
    assert [p["port"] for p in objects["Service", "nats"]["spec"]["ports"]] == [4222]
    assert [p["containerPort"] for p in nats["ports"]] == [4222, 6222]  # client, routes
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "http://127.0.0.1:8222/healthz" in " ".join(nats[probe]["exec"]["command"])


async def test_nats_monitoring_answers_on_loopback_only_as_deployed_and_under_up(
    tmp_path: Path,
) -> None:
    """nats-server itself, run with deploy/nats-auth.conf as compose and Kubernetes run it
    (only the port numbers moved off the fixed ones), reports its monitoring host."""
    server_auth = natsauth.ServerAuth.generate()
    monitor = free_port()
    conf = (DEPLOY / "nats-auth.conf").read_text()
    assert 'http: "127.0.0.1:8222"' in conf
    config = tmp_path / "auth.conf"
    config.write_text(conf.replace("127.0.0.1:8222", f"127.0.0.1:{monitor}"))
    env = {
        "AGENTCOM_NATS_HUB_PASSWORD": server_auth.hub_password,
        "AGENTCOM_NATS_ISSUER": server_auth.issuer,
    }
    argv = [str(embedded.nats_server_binary()), "-c", str(config), "-js", "-sd", str(tmp_path)]
    server = await asyncio.create_subprocess_exec(
        *argv, "-p", str(free_port()), env=env, stderr=subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient(timeout=1) as client:

            async def answered() -> Any:
                try:
                    return (await client.get(f"http://127.0.0.1:{monitor}/varz")).json()
                except httpx.HTTPError as exc:  # not listening yet
                    raise AssertionError(str(exc)) from exc

            varz = await eventually(answered, timeout=20)
    finally:
        server.terminate()
        await server.wait()
    assert varz["http_host"] == "127.0.0.1"

    layout = embedded.NatsLayout(tmp_path / "up", tmp_path / "up.conf", 4222, 8222)
    embedded.nats_command(layout)
    assert 'http: "127.0.0.1:8222"' in layout.config.read_text()  # what `agentcom up` runs


async def test_the_nats_statefulset_args_form_a_jetstream_cluster(tmp_path: Path) -> None:
    """The StatefulSet's own args, run as three nats-servers here (each pod's name and its
    peers' route addresses mapped to loopback ports, `/data` to a directory each), form one
    JetStream cluster that keeps the streams on all three nodes."""
    nats = _objects()["StatefulSet", "nats"]["spec"]
    (container,) = nats["template"]["spec"]["containers"]
    size = nats["replicas"]
    server_auth = natsauth.ServerAuth.generate()
    env = {
        "AGENTCOM_NATS_HUB_PASSWORD": server_auth.hub_password,
        "AGENTCOM_NATS_ISSUER": server_auth.issuer,
    }
    routes, clients, monitors = ([free_port() for _ in range(size)] for _ in range(3))
    conf = (DEPLOY / "nats-auth.conf").read_text()
    nodes: list[asyncio.subprocess.Process] = []
    try:
        for i in range(size):
            pod = f"nats-{i}"
            config = tmp_path / f"{pod}.conf"
            config.write_text(conf.replace("127.0.0.1:8222", f"127.0.0.1:{monitors[i]}"))
            args: list[str] = []
            for arg in container["args"]:
                arg = arg.replace("$(POD_NAME)", pod).replace("/etc/nats/auth.conf", str(config))
                arg = arg.replace("0.0.0.0:6222", f"127.0.0.1:{routes[i]}")
                for j in range(size):
                    arg = arg.replace(
                        f"nats-{j}.{nats['serviceName']}:6222", f"127.0.0.1:{routes[j]}"
                    )
                args.append(arg)
            args[args.index("-sd") + 1] = str(tmp_path / pod)
            nodes.append(
                await asyncio.create_subprocess_exec(
                    str(embedded.nats_server_binary()),
                    *args,
                    "-p",
                    str(clients[i]),
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
            )
        async with httpx.AsyncClient(timeout=1) as client:
            for monitor in monitors:

                async def healthy(monitor: int = monitor) -> None:
                    try:
                        url = f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true"
                        answer = await client.get(url)
                    except httpx.HTTPError as exc:  # not listening yet
                        raise AssertionError(str(exc)) from exc
                    assert answer.status_code == 200, answer.text

                await eventually(healthy, timeout=60)
        url = server_auth.hub_url(f"nats://127.0.0.1:{clients[0]}")
        settings = CommonSettings(nats_url=url, nats_stream_replicas=size)
        nc = await messaging.connect_once(url, 10)
        try:
            js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed

            async def made() -> None:  # a fresh cluster may still be electing its meta leader
                try:
                    await messaging.ensure_streams(js, settings)
                except Exception as exc:
                    raise AssertionError(repr(exc)) from exc

            await eventually(made, timeout=60)
            info = await js.stream_info("REPORTS")
            assert info.cluster is not None
            assert len(info.cluster.replicas or []) == size - 1
        finally:
            await nc.close()
    finally:
        for node in nodes:
            node.terminate()
            await node.wait()
