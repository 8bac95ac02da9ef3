"""The deployment files (Dockerfile, Compose, Kubernetes) parse and agree with the code.

No Docker engine or cluster is needed: the files are read as data and checked against
``worker.settings.Settings`` and the ``jobmanager`` command line.
"""

import configparser
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import AliasChoices

from adapters.kafka_schedules import SCHEDULES_TOPIC_CONFIG
from worker.cli import app
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
YAML_FILES = sorted(
    path
    for directory in (DEPLOY / "compose", K8S)
    for path in directory.rglob("*")
    if path.suffix in {".yaml", ".yml"}
)
OUR_SERVICES = ("gateway", "worker", "scheduler")
TOPIC_FIELDS = (
    "commands_topic",
    "events_topic",
    "dead_letter_topic",
    "environments_topic",
    "schedules_topic",
)


# -- helpers ----------------------------------------------------------------------------------


def _load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _default(field: str) -> Any:
    return Settings.model_fields[field].default


def _settings_env_names() -> set[str]:
    """Every environment variable name Settings reads (its aliases, else prefix + field)."""
    prefix = Settings.model_config["env_prefix"]
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}")
    return {name.upper() for name in names}


def _cli_commands() -> set[str]:
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(KUSTOMIZATION.read_text())
    return loaded


def _k8s_docs() -> list[dict[str, Any]]:
    return [doc for name in _kustomization()["resources"] for doc in _load_all(K8S / name)]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _k8s_docs() if doc["kind"] == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    [doc] = [doc for doc in _of_kind(kind) if doc["metadata"]["name"] == name]
    return doc


def _containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for deployment in _of_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def _configmap() -> dict[str, str]:
    data: dict[str, str] = _one("ConfigMap", "jobmanager-config")["data"]
    return data


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions per stage, continuation lines joined, comments dropped."""
    lines: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:  # an ARG before the first FROM belongs to no stage
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def _instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


# -- every file -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: str(path.relative_to(REPO)))
def test_yaml_file_parses(path: Path) -> None:
    """Every YAML file under deploy/compose and deploy/k8s parses into mappings."""
    docs = _load_all(path)
    assert docs
    assert all(isinstance(doc, dict) for doc in docs)


def test_env_var_names_exist_in_settings() -> None:
    """Every JOBMANAGER_* name set in compose or Kubernetes is one Settings reads (no typos)."""
    compose = _compose()["services"]
    names = {name for service in OUR_SERVICES for name in _environment(compose[service])}
    names |= set(_configmap())
    for secret in _of_kind("Secret"):
        names |= set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for _, container in _containers():
        for variable in container.get("env", []):
            names.add(variable["name"])
            for ref in ("secretKeyRef", "configMapKeyRef"):
                if ref in variable.get("valueFrom", {}):
                    names.add(variable["valueFrom"][ref]["key"])
    ours = {name for name in names if name.startswith("JOBMANAGER_")}
    assert len(ours) > 5
    assert ours - _settings_env_names() == set()


# -- compose ----------------------------------------------------------------------------------


def test_compose_has_the_services() -> None:
    """Compose runs a broker, the gateway, the workers and the (optional) scheduler."""
    assert set(_compose()["services"]) == {"kafka", *OUR_SERVICES}


def test_compose_images() -> None:
    """The broker is the official apache/kafka image; ours is built from deploy/Dockerfile."""
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert len({services[name]["image"] for name in OUR_SERVICES}) == 1
    for name in OUR_SERVICES:
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_services_wait_for_a_healthy_broker() -> None:
    """Our services depend on the broker being healthy, and the broker has a healthcheck."""
    services = _compose()["services"]
    assert services["kafka"]["healthcheck"]["test"]
    for name in OUR_SERVICES:
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_broker_is_a_kraft_single_node() -> None:
    """The broker env sets the KRaft variables the image documents, consistently."""
    env = _environment(_compose()["services"]["kafka"])
    required = {
        "CLUSTER_ID",
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_INTER_BROKER_LISTENER_NAME",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
    }
    assert required - set(env) == set()
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    voter_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert voter_id == env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    assert listeners[controller].rpartition(":")[2] == voter.rpartition(":")[2]
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_compose_bootstrap_servers_is_an_advertised_listener() -> None:
    """Our services reach the broker at an address it advertises."""
    services = _compose()["services"]
    advertised = {
        item.split("://")[1]
        for item in _environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    for name in OUR_SERVICES:
        assert _environment(services[name])["JOBMANAGER_KAFKA_BOOTSTRAP_SERVERS"] in advertised


def test_compose_gateway_listens_on_all_interfaces() -> None:
    """The gateway binds 0.0.0.0 and publishes the port it listens on."""
    gateway = _compose()["services"]["gateway"]
    env = _environment(gateway)
    assert env["JOBMANAGER_HOST"] == "0.0.0.0"
    assert [port.rpartition(":")[2] for port in gateway["ports"]] == [env["JOBMANAGER_PORT"]]
    assert f":{env['JOBMANAGER_PORT']}/readyz" in " ".join(gateway["healthcheck"]["test"])


def test_compose_runs_existing_commands_with_two_workers() -> None:
    """Services that start by default run real CLI commands; two workers, within partitions."""
    services = _compose()["services"]
    commands = _cli_commands()
    for name in OUR_SERVICES:
        if "profiles" not in services[name]:
            [command] = services[name]["command"]
            assert command in commands, name
    assert services["gateway"]["command"] == ["gateway"]
    assert services["worker"]["command"] == ["worker"]
    replicas = services["worker"]["deploy"]["replicas"]
    assert replicas == 2
    assert replicas <= int(_environment(services["worker"])["JOBMANAGER_TOPIC_PARTITIONS"])


def test_compose_runs_a_scheduler() -> None:
    """The scheduler service runs `jobmanager scheduler` by default."""
    scheduler = _compose()["services"]["scheduler"]
    assert scheduler["command"] == ["scheduler"]
    assert "profiles" not in scheduler


# -- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_builds_the_wheel_in_a_builder_stage() -> None:
    """At least two stages; the first named one builds the project's wheel from the repo."""
    stages = _dockerfile_stages()
    assert len(stages) >= 2
    builder = stages[0]
    assert _instructions(builder, "FROM")[0].lower().endswith(" as builder")
    assert any(
        "pip wheel" in run and run.rstrip().endswith((" .", ' ".[otel]"'))
        for run in _instructions(builder, "RUN")
    )


def test_dockerfile_runtime_installs_the_wheel_without_sources_or_build_tools() -> None:
    """The final stage pip-installs the builder's wheels, copies no sources, adds no compiler."""
    runtime = _dockerfile_stages()[-1]
    runs = _instructions(runtime, "RUN")
    assert any(
        "from=builder" in run
        and "pip install" in run
        and "--no-index" in run
        and "jobmanager" in run
        for run in runs
    )
    assert all("--from=" in copy for copy in _instructions(runtime, "COPY")), "no source COPY"
    assert _instructions(runtime, "ADD") == []
    for tool in ("gcc", "build-essential", "g++", "make "):
        assert all(tool not in run for run in runs), tool


def test_dockerfile_runs_as_non_root() -> None:
    """The final stage's last USER is not root, numeric, and matches the pods' runAsUser."""
    users = _instructions(_dockerfile_stages()[-1], "USER")
    assert users
    uid = users[-1].partition(":")[0]
    assert uid.isdigit()
    assert uid != "0"
    for deployment in _of_kind("Deployment"):
        context = deployment["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True
        assert str(context["runAsUser"]) == uid


def test_dockerfile_entrypoint_is_jobmanager() -> None:
    """ENTRYPOINT ends in `jobmanager`; the default CMD is one of its commands."""
    runtime = _dockerfile_stages()[-1]
    [entrypoint] = _instructions(runtime, "ENTRYPOINT")
    assert json.loads(entrypoint)[-1] == "jobmanager"
    [cmd] = _instructions(runtime, "CMD")
    assert json.loads(cmd)[0] in _cli_commands()


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    """The context is an allow-list: what the builder COPYs is in, .venv/.git/.jobmanager out."""
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = set()
    for stage in _dockerfile_stages():
        for copy in _instructions(stage, "COPY"):
            words = [word for word in copy.split() if not word.startswith("--")]
            if "--from=" not in copy:
                sources |= {word.rstrip("/").removeprefix("./") for word in words[:-1]}
    assert sources
    assert sources <= admitted
    assert admitted & {".venv", ".git", ".jobmanager", "build", "tests"} == set()


# -- Kubernetes -------------------------------------------------------------------------------


def test_kustomization_lists_every_file() -> None:
    """kustomization.yaml lists every manifest in deploy/k8s, and sets no namespace."""
    kustomization = _kustomization()
    files = {path.name for path in K8S.glob("*.y*ml")} - {KUSTOMIZATION.name}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert "namespace" not in kustomization


def test_every_resource_has_api_version_kind_and_name() -> None:
    """Each resource has apiVersion, kind and metadata.name, and no namespace."""
    docs = _k8s_docs()
    assert len(docs) >= 11
    for doc in docs:
        assert doc["apiVersion"], doc
        assert doc["kind"], doc
        assert doc["metadata"]["name"], doc
        assert "namespace" not in doc["metadata"], doc["metadata"]["name"]


def test_deployments_select_their_template_labels() -> None:
    """Each Deployment's selector matches its pod template's labels."""
    deployments = _of_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {
        "jobmanager-gateway",
        "jobmanager-worker",
        "jobmanager-scheduler",
    }
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


def test_containers_have_an_image_kustomize_rewrites() -> None:
    """Every container has an image, named in the kustomization's images."""
    names = {image["name"] for image in _kustomization()["images"]}
    for _, container in _containers():
        assert container["image"]
        assert container["image"].partition(":")[0] in names


def test_probes_point_at_health_endpoints_on_declared_ports() -> None:
    """Liveness and startup probes hit /healthz, readiness /readyz, on a declared port."""
    for _, container in _containers():
        declared = {port.get("name") for port in container["ports"]} | {
            port["containerPort"] for port in container["ports"]
        }
        paths = {
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
            "startupProbe": "/healthz",
        }
        for probe, path in paths.items():
            if probe == "startupProbe" and probe not in container:
                continue
            http = container[probe]["httpGet"]
            assert http["path"] == path, (container["name"], probe)
            assert http["port"] in declared, (container["name"], probe)


def test_declared_ports_are_the_configured_ports() -> None:
    """Gateway and worker declare the ports JOBMANAGER_PORT / _WORKER_METRICS_PORT configure."""
    configured = {
        "gateway": ("http", int(_configmap()["JOBMANAGER_PORT"])),
    }
    worker = _one("Deployment", "jobmanager-worker")["spec"]["template"]["spec"]
    [container] = worker["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    configured["worker"] = ("metrics", int(env["JOBMANAGER_WORKER_METRICS_PORT"]))
    scheduler = _one("Deployment", "jobmanager-scheduler")["spec"]["template"]["spec"]
    [container] = scheduler["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    configured["scheduler"] = ("metrics", int(env["JOBMANAGER_WORKER_METRICS_PORT"]))
    for _, container in _containers():
        name, number = configured[container["name"]]
        assert {"name": name, "containerPort": number} in container["ports"]
    compose_worker = _compose()["services"]["worker"]
    port = _environment(compose_worker)["JOBMANAGER_WORKER_METRICS_PORT"]
    assert f":{port}/readyz" in " ".join(compose_worker["healthcheck"]["test"])


def test_services_select_existing_pods() -> None:
    """Each Service selects some Deployment's pods, and targets a port those pods declare."""
    services = _of_kind("Service")
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        matched = [
            deployment
            for deployment in _of_kind("Deployment")
            if selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            for deployment in matched:
                declared = {
                    value
                    for container in deployment["spec"]["template"]["spec"]["containers"]
                    for declared_port in container["ports"]
                    for value in (declared_port.get("name"), declared_port["containerPort"])
                }
                assert port["targetPort"] in declared


def test_every_deployment_has_a_disruption_budget() -> None:
    """A PodDisruptionBudget selects each Deployment's pods."""
    budgets = _of_kind("PodDisruptionBudget")
    for deployment in _of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(
            budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
            for budget in budgets
        ), deployment["metadata"]["name"]


def test_env_sources_exist() -> None:
    """envFrom and secretKeyRef name a ConfigMap/Secret of the base, and keys it holds."""
    configmaps = {doc["metadata"]["name"] for doc in _of_kind("ConfigMap")}
    secrets = {
        doc["metadata"]["name"]: set(doc.get("stringData", {})) | set(doc.get("data", {}))
        for doc in _of_kind("Secret")
    }
    for _, container in _containers():
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["key"] in secrets[ref["name"]]


def test_secret_holds_placeholders_only() -> None:
    """The Secret's values are visibly placeholders, never real-looking secrets."""
    for secret in _of_kind("Secret"):
        assert "data" not in secret, "placeholders go in stringData, readable"
        for key, value in secret["stringData"].items():
            assert value.startswith("REPLACE-ME"), key


def test_kafka_topics_match_settings_defaults() -> None:
    """Strimzi KafkaTopics: the five Settings topic names, partitions/replicas as configured."""
    topics = _of_kind("KafkaTopic")
    assert {topic["apiVersion"] for topic in topics} == {"kafka.strimzi.io/v1beta2"}
    by_name = {topic["spec"]["topicName"]: topic for topic in topics}
    assert set(by_name) == {_default(field) for field in TOPIC_FIELDS}
    configmap = _configmap()
    assert int(configmap["JOBMANAGER_TOPIC_PARTITIONS"]) == _default("topic_partitions")
    for name, topic in by_name.items():
        assert topic["metadata"]["name"] == name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]
        assert topic["spec"]["partitions"] == int(configmap["JOBMANAGER_TOPIC_PARTITIONS"])
        assert topic["spec"]["replicas"] == int(configmap["JOBMANAGER_TOPIC_REPLICATION_FACTOR"])
        assert topic["spec"]["config"]["min.insync.replicas"] < topic["spec"]["replicas"]
    for field in ("events_topic", "environments_topic"):
        config = by_name[_default(field)]["spec"]["config"]
        assert config["retention.ms"] == _default("events_retention_ms") == -1
    schedules = by_name[_default("schedules_topic")]["spec"]["config"]
    assert schedules["cleanup.policy"] == SCHEDULES_TOPIC_CONFIG["cleanup.policy"]


def test_worker_replicas_do_not_exceed_partitions() -> None:
    """Worker pods (surge included) never outnumber the commands topic's partitions."""
    worker = _one("Deployment", "jobmanager-worker")
    strategy = worker["spec"].get("strategy", {})
    surge = strategy.get("rollingUpdate", {}).get("maxSurge", 1)
    pods = worker["spec"]["replicas"] + (surge if strategy.get("type") != "Recreate" else 0)
    commands = next(
        topic
        for topic in _of_kind("KafkaTopic")
        if topic["spec"]["topicName"] == _default("commands_topic")
    )
    assert pods <= commands["spec"]["partitions"]


def test_termination_grace_exceeds_shutdown_grace() -> None:
    """Pods are killed only after JOBMANAGER_SHUTDOWN_GRACE_SECONDS has run out."""
    configmap = _configmap()
    for deployment, container in _containers():
        env = {item["name"]: item.get("value") for item in container.get("env", [])}
        grace = float(
            env.get("JOBMANAGER_SHUTDOWN_GRACE_SECONDS")
            or configmap.get("JOBMANAGER_SHUTDOWN_GRACE_SECONDS")
            or _default("shutdown_grace_seconds")
        )
        kill_after = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert kill_after > grace, deployment["metadata"]["name"]


# -- the wheel the image installs -------------------------------------------------------------


def test_wheel_declares_the_jobmanager_console_script(tmp_path: Path) -> None:
    """The built wheel's metadata declares `jobmanager = worker.cli:app`, and ships that module.

    test_packaging.py checks that every module ships; this checks the entry point the image's
    ENTRYPOINT relies on, in the wheel itself rather than in the editable install.
    """
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("jobmanager-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points).decode())
    assert parser["console_scripts"]["jobmanager"].strip() == "worker.cli:app"
    assert "worker/cli.py" in names
