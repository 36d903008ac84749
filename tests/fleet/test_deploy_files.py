"""deploy/: the Compose file (through `docker-compose config`), the Kubernetes manifests
(Kubernetes' own schemas from `kubernetes-validate`, KEDA's from tests/fleet/schemas), the
systemd units and the Dockerfile, validated offline, and checked against the CLI they run."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.services import require_services
from tidegate.config import Settings

from .cli_args import parse

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda.json").read_text())
SHUTDOWN_GRACE_DEFAULT = Settings.model_fields["shutdown_grace_s"].default
PRESETS = {"high": (10, 2), "medium": (5, 1), "low": (20, 1)}  # concurrency, replicas


# -- Compose ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The Compose file as docker-compose resolves it with the example env file."""
    binary = shutil.which("docker-compose")
    if binary is None:
        message = "docker-compose is not installed (`make compose-tools` installs Debian's)"
        if require_services():
            pytest.fail(message)
        pytest.skip(message)
    res = subprocess.run([binary, "--env-file", str(DEPLOY / ".env.example"), "-f",
                          str(DEPLOY / "compose.yaml"), "config"], capture_output=True,
                         text=True, timeout=60, cwd=DEPLOY)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def tidegate_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in config["services"].items()
            if svc.get("image", "").startswith("tidegate")}


def test_compose_services_agree_with_the_cli(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ours = tidegate_services(compose)
    assert set(ours) == {"migrate", "api", "worker-high", "worker-medium", "worker-low", "beat",
                         "flower"}
    for name, svc in ours.items():
        command, params = parse(svc["command"])
        assert command == {"migrate": "db upgrade"}.get(name, name.split("-")[0]), name
        # the settings each process starts with pass the prod guards
        env = {k: str(v) for k, v in svc["environment"].items()}
        Settings(_env_file=None, **{k.removeprefix("TIDEGATE_").lower(): v  # type: ignore[arg-type]
                                    for k, v in env.items() if k.startswith("TIDEGATE_")})
        assert svc["restart"] in ("unless-stopped", "always", "no"), name
        if name != "migrate":
            assert svc["deploy"]["resources"]["limits"]["memory"], name
            assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        if name.startswith("worker-"):
            queue = name.removeprefix("worker-")
            assert (params["queues"], params["concurrency"]) == (queue, PRESETS[queue][0])
            assert svc["deploy"]["replicas"] == PRESETS[queue][1]
            assert svc["healthcheck"]["test"] == ["CMD", "tidegate", "worker", "--check"]
            grace = float(env.get("TIDEGATE_SHUTDOWN_GRACE_S", SHUTDOWN_GRACE_DEFAULT))
            assert _seconds(svc["stop_grace_period"]) > grace + 10, name
    assert ours["api"]["deploy"]["replicas"] == 3
    assert "8000" in ours["api"]["expose"] and "/readyz" in " ".join(ours["api"]["healthcheck"]["test"])
    assert ours["beat"]["deploy"]["replicas"] == 2
    flower = ours["flower"]
    assert parse(flower["command"])[1]["address"] == "0.0.0.0"
    assert ":" in flower["environment"]["TIDEGATE_FLOWER_BASIC_AUTH"]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])
    assert all(str(p).startswith("127.0.0.1:") if isinstance(p, str)
               else p.get("host_ip") == "127.0.0.1" for p in flower.get("ports", []))
    # the services they need, as production wants them
    redis = " ".join(services["redis"]["command"])
    for wanted in ("--appendonly yes", "--maxmemory-policy noeviction", "--requirepass"):
        assert wanted in redis
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_USER"] != "guest"
    assert "tcp_keepalives_idle=10" in services["postgres"]["command"]
    for name in ("postgres", "redis", "rabbitmq", "api", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    assert set(compose["volumes"]) >= {"pgdata", "redisdata", "rabbitdata"}


def test_compose_nginx_prometheus_and_grafana_point_at_the_services(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text()
    assert re.search(r"server api:8000;", nginx)
    sse = re.search(r"location ~ \^/v1/\(jobs/\[\^/\]\+/events\|events\|chat/completions\)\$ "
                    r"\{(.*?)\}", nginx, re.S)
    assert sse and "proxy_buffering off;" in sse.group(1)
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"
    prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    worker_port = int(services["worker-high"]["environment"]["TIDEGATE_WORKER_METRICS_PORT"])
    assert jobs["tidegate-workers"]["dns_sd_configs"][0]["port"] == worker_port
    assert set(jobs["tidegate-workers"]["dns_sd_configs"][0]["names"]) == {
        "worker-high", "worker-medium", "worker-low"}
    assert jobs["tidegate-api"]["dns_sd_configs"][0]["names"] == ["api"]
    for volume in services["grafana"]["volumes"] + services["prometheus"]["volumes"]:
        source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
        if source.startswith("/") or source.startswith("."):
            assert Path(source).exists(), source  # every file Compose mounts is shipped
    dashboard = json.loads((DEPLOY / "grafana" / "tidegate.json").read_text())
    assert dashboard["panels"]


def _seconds(value: str | int) -> float:
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) * 60
    return float(text.rstrip("s"))


# -- Kubernetes -------------------------------------------------------------------------------
def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_manifest_validates_against_its_schema() -> None:
    docs = manifests()
    assert len(docs) >= 15
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            schema = {**KEDA_SCHEMA, "$ref": f"#/$defs/{doc['kind']}"}
            jsonschema.validate(doc, schema)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # and a broken one is refused (the validation is not vacuous)
    broken = json.loads(json.dumps(by_kind(docs, "Deployment")["tidegate-api"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    scaled = json.loads(json.dumps(by_kind(docs, "ScaledObject")["tidegate-worker-high"]))
    scaled["spec"]["triggers"][0]["metadata"]["value"] = 10
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, {**KEDA_SCHEMA, "$ref": "#/$defs/ScaledObject"})


def test_manifests_reference_each_other_and_the_cli() -> None:
    docs = manifests()
    deployments = by_kind(docs, "Deployment")
    config = by_kind(docs, "ConfigMap")["tidegate-config"]["data"]
    secret = by_kind(docs, "Secret")["tidegate-secrets"]["stringData"]
    grace = float(config.get("TIDEGATE_SHUTDOWN_GRACE_S", SHUTDOWN_GRACE_DEFAULT))
    Settings(_env_file=None, **{k.removeprefix("TIDEGATE_").lower(): v  # type: ignore[arg-type]
                                for k, v in {**config, **secret}.items()
                                if k.startswith("TIDEGATE_")})
    assert set(deployments) == {"tidegate-api", "tidegate-beat", "tidegate-flower",
                                *(f"tidegate-worker-{q}" for q in PRESETS)}
    pods = {name: d["spec"]["template"] for name, d in deployments.items()}
    pods["tidegate-migrate"] = by_kind(docs, "Job")["tidegate-migrate"]["spec"]["template"]
    for name, pod in pods.items():
        spec = pod["spec"]
        (container,) = spec["containers"]
        command, params = parse(container["args"])
        assert command == {"tidegate-migrate": "db upgrade"}.get(
            name, name.removeprefix("tidegate-").split("-")[0]), name
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {"tidegate-config", "tidegate-secrets"}, name
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["resources"]["limits"]["memory"]
        if name in deployments:
            selector = deployments[name]["spec"]["selector"]["matchLabels"]
            assert selector.items() <= pod["metadata"]["labels"].items(), name
        if name.startswith("tidegate-worker-"):
            queue = name.removeprefix("tidegate-worker-")
            assert (params["queues"], params["concurrency"]) == (queue, PRESETS[queue][0])
            for probe in ("startupProbe", "livenessProbe"):
                assert container[probe]["exec"]["command"] == ["tidegate", "worker", "--check"]
            assert spec["terminationGracePeriodSeconds"] > grace + 10, name
    api = pods["tidegate-api"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployments["tidegate-beat"]["spec"]["replicas"] == 2
    labels_of = {name: d["spec"]["template"]["metadata"]["labels"]
                 for name, d in deployments.items()}

    def selects(selector: dict[str, str]) -> set[str]:
        return {n for n, labels in labels_of.items() if selector.items() <= labels.items()}

    for svc in by_kind(docs, "Service").values():
        (target,) = selects(svc["spec"]["selector"])
        ports = {p["name"] for c in deployments[target]["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert selects(pdbs["tidegate-api"]["spec"]["selector"]["matchLabels"]) == {"tidegate-api"}
    for pdb in pdbs.values():
        assert len(selects(pdb["spec"]["selector"]["matchLabels"])) == 1
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "tidegate-api"
    auths = by_kind(docs, "TriggerAuthentication")
    scaled = by_kind(docs, "ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == {
        f"tidegate-worker-{q}" for q in PRESETS}
    for obj in scaled.values():
        target = obj["spec"]["scaleTargetRef"]["name"]
        args = parse(pods[target]["spec"]["containers"][0]["args"])[1]
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq" and trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["metadata"]["queueName"] == args["queues"]
        assert int(trigger["metadata"]["value"]) == args["concurrency"]  # one pod per c waiting
        assert obj["spec"]["minReplicaCount"] >= 1  # never to zero under running jobs
        auth = auths[trigger["authenticationRef"]["name"]]
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == "tidegate-secrets" and ref["key"] in secret


# -- systemd and the Dockerfile ---------------------------------------------------------------
def test_systemd_units() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} == {"tidegate-api.service", "tidegate-worker@.service",
                                       "tidegate-beat.service", "tidegate-flower.service"}
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit.read_text())
        service = parser["Service"]
        assert service["KillSignal"] == "SIGTERM" and service["Restart"] in ("always",
                                                                           "on-failure")
        assert float(service["TimeoutStopSec"]) > SHUTDOWN_GRACE_DEFAULT + 5
        assert service["User"] == "tidegate" and parser["Install"]["WantedBy"]
        argv = shlex.split(service["ExecStart"].replace("%i", "high").replace("%H", "host"))
        assert argv[0] == "/opt/tidegate/bin/tidegate"
        command, _ = parse(argv[1:])
        assert command == unit.stem.removeprefix("tidegate-").rstrip("@")


def test_dockerfile_is_multi_stage_slim_and_unprivileged() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
    assert len(stages) >= 2 and all("slim" in image for image, _ in stages)
    runtime = text[text.rindex("\nFROM "):]
    assert re.search(r"^USER 10001", runtime, re.M)
    assert "ENTRYPOINT [\"tidegate\"]" in runtime and "HEALTHCHECK" in runtime
    assert not re.search(r"(?i)(ARG|ENV)\s+\S*(SECRET|PASSWORD|TOKEN|API_KEY)", text)
    assert "/healthz" in runtime and "TIDEGATE_PORT=8000" in runtime
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ignored[0] == "*" and {"!src/", "!pyproject.toml", "!README.md"} <= set(ignored)
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in copied.split():
            assert (ROOT / source).exists() and f"!{source.rstrip('/')}" in {
                i.rstrip("/") for i in ignored}, source


def test_the_docker_build_context_builds_a_complete_wheel(tmp_path: Path) -> None:
    """What .dockerignore lets through is enough for the Dockerfile's `pip install .`, and
    the wheel carries the files the processes read at run time."""
    context = tmp_path / "context"
    context.mkdir()
    for kept in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / kept, context / kept)
    shutil.copytree(ROOT / "src", context / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                          "-w", str(tmp_path / "dist"), str(context)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("tidegate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("tidegate/api/gunicorn.conf.py", "tidegate/worker/celery.py",
                   "tidegate/llm_defaults.toml", "tidegate/api/static/index.html",
                   "tidegate/adapters/limiter/lua/acquire.lua",
                   "tidegate/adapters/sql/migrations/versions/0001_initial.py"):
        assert needed in names, needed
