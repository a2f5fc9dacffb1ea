"""deploy/ and the Dockerfile read as an operator's tools read them: every setting they name
exists, every probe points at a real endpoint of the app, the image runs unprivileged."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gethookd.api.app import ROUTES
from gethookd.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KNOWN = {s.name for s in SETTINGS}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_objects() -> list[dict]:
    return [doc for path in sorted(DEPLOY.glob("kubernetes/*.yaml")) for doc in documents(path)]


def gethookd_containers(objects: list[dict]) -> list[dict]:
    found = []
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        found += [c for c in spec.get("containers", []) if c["image"].startswith("gethookd")]
    return found


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_compose_names_only_real_settings_and_runs_migrate_then_both_roles():
    compose = documents(DEPLOY / "docker-compose.yml")[0]
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["gethookd"]["command"] == ["run", "--role", "all"]
    assert services["gethookd"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("migrate", "gethookd"):
        env = services[name]["environment"]
        assert set(env) <= KNOWN, set(env) - KNOWN
        assert {"DATABASE_URL", "ENCRYPTION_KEY"} <= set(env)
        assert "@postgres:5432/" in env["DATABASE_URL"]


def test_kubernetes_settings_all_exist_and_secrets_come_from_the_secret():
    objects = k8s_objects()
    [secret] = by_kind(objects, "Secret").values()
    assert set(secret["stringData"]) == {"DATABASE_URL", "ENCRYPTION_KEY"}
    [config_map] = by_kind(objects, "ConfigMap").values()
    assert set(config_map["data"]) <= KNOWN, set(config_map["data"]) - KNOWN
    containers = gethookd_containers(objects)
    assert len(containers) == 3  # migrate, api, worker: one image
    assert len({c["image"] for c in containers}) == 1
    for container in containers:
        names = {e["name"] for e in container.get("env", [])}
        assert names <= KNOWN, names - KNOWN
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {secret["metadata"]["name"], config_map["metadata"]["name"]}


def test_kubernetes_has_a_migrate_job_and_one_deployment_per_role():
    objects = k8s_objects()
    [job] = by_kind(objects, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    deployments = by_kind(objects, "Deployment")
    roles = {
        name: d["spec"]["template"]["spec"]["containers"][0]["args"]
        for name, d in deployments.items()
    }
    assert sorted(roles.values()) == [["run", "--role", "api"], ["run", "--role", "worker"]]
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= 60 + 10  # DRAIN_TIMEOUT + grace
        assert pod["securityContext"]["runAsNonRoot"] is True
        requests = pod["containers"][0]["resources"]["requests"]
        assert requests["cpu"] and requests["memory"]


def test_probes_point_at_real_endpoints_on_the_container_port():
    objects = k8s_objects()
    api = by_kind(objects, "Deployment")["gethookd-api"]
    [container] = api["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = int({e["name"]: e["value"] for e in container["env"]}["PORT"])
    probes = {k: container[k]["httpGet"] for k in ("readinessProbe", "livenessProbe")}
    assert {p["path"] for p in probes.values()} == {"/readyz", "/healthz"}
    for probe in probes.values():
        assert probe["path"] in ROUTES
        assert ports[probe["port"]] == port
    [service] = by_kind(objects, "Service").values()
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] in ports


def test_the_image_runs_unprivileged_with_a_healthcheck_on_a_real_endpoint():
    dockerfile = (ROOT / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user.split(":")[0] not in ("root", "0")
    [check] = re.findall(r"^HEALTHCHECK .*(?:\n .*)*", dockerfile, re.MULTILINE)
    [path] = re.findall(r"127\.0\.0\.1:%s(/\w+)", check)
    assert path in ROUTES
    uid = int(user.split(":")[0])
    for obj in by_kind(k8s_objects(), "Deployment").values():
        assert obj["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def test_the_systemd_unit_uses_the_watchdog():
    unit = (ROOT / "systemd" / "gethookd.service").read_text()
    assert re.search(r"^WatchdogSec=\d+s$", unit, re.MULTILINE)
    assert re.search(r"^Type=notify$", unit, re.MULTILINE)
    assert re.search(r"^NotifyAccess=main$", unit, re.MULTILINE)
