"""deploy/k8s: every kustomization renders, validates against the Kubernetes schemas, and holds
what a production deployment needs (probes, limits, hardening, policies, autoscaling)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from deploy_support import (
    KUSTOMIZATIONS,
    OVERLAYS,
    SERVICES,
    by_kind,
    is_incidentflow_image,
    matches,
    pod_labels,
    pod_spec,
    render,
    workloads,
)

# The oldest Kubernetes release the manifests support, and the newest schemas available.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
AUTOSCALED = {"classifier", "notifier"}
HEALTH = {"livenessProbe": "/health/live", "readinessProbe": "/health/ready"}

Docs = tuple[dict[str, Any], ...]


def container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container["ports"] if p.get("name") == port))


def app_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    container: dict[str, Any] = containers[0]
    return container


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_with_kustomize(kustomization: str) -> None:
    docs = render(kustomization)
    assert docs
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "incidentflow"
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_validates_against_the_kubernetes_schemas(kustomization: str, version: str) -> None:
    failures = []
    for doc in render(kustomization):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{name}: {'/'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{name}: no schema for {doc['apiVersion']} in Kubernetes {version}")
    assert failures == []


def test_the_schema_check_rejects_a_broken_manifest() -> None:
    # Guards the guard: strict validation catches a misspelt field.
    deployment = dict(by_kind(render("base"), "Deployment")["ingest"])
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_base_resources_are_in_every_overlay(overlay: str) -> None:
    docs = render(overlay)
    assert "incidentflow" in by_kind(docs, "Namespace")
    assert [n for n in by_kind(docs, "ConfigMap") if n.startswith("incidentflow-config")]
    assert set(SERVICES) <= set(by_kind(docs, "Deployment"))
    assert set(SERVICES) <= set(by_kind(docs, "Service"))
    assert set(SERVICES) <= set(by_kind(docs, "PodDisruptionBudget"))
    assert set(by_kind(docs, "HorizontalPodAutoscaler")) == AUTOSCALED
    assert "migrate" in by_kind(docs, "Job")


def test_base_ships_an_example_secret() -> None:
    secret = by_kind(render("base"), "Secret")["incidentflow-secrets"]
    assert {"RABBITMQ_URL", "DATABASE_URL"} <= set(secret["stringData"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_probes_on_its_health_endpoints(overlay: str) -> None:
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    (config,) = [
        c
        for name, c in by_kind(docs, "ConfigMap").items()
        if name.startswith("incidentflow-config")
    ]
    for name in SERVICES:
        container = app_container(deployments[name])
        # Ingest answers probes on its internal port (services/ingest/internal.py).
        port = int(config["data"]["INGEST_INTERNAL_PORT"]) if name == "ingest" else 8000
        for probe, path in HEALTH.items():
            http = container[probe]["httpGet"]
            assert http["path"] == path, (name, probe)
            assert container_port(container, http["port"]) == port, (name, probe)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_have_requests_and_limits(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        for container in pod_spec(workload)["containers"]:
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (
                    f"{workload['metadata']['name']}/{container['name']}: {bound}"
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_incidentflow_pods_are_non_root_with_a_read_only_root(overlay: str) -> None:
    docs = render(overlay)
    pods = [w for w in workloads(docs) if is_incidentflow_image(app_container(w)["image"])]
    assert {w["metadata"]["name"] for w in pods} == set(SERVICES) | {"migrate"}
    for workload in pods:
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec.get("automountServiceAccountToken") is False, name
        container = app_container(workload)
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{name}: writable /tmp"


def test_pod_user_is_the_image_user() -> None:
    from test_deploy_image import final_stage, instructions

    uid = int(str(instructions("USER", final_stage())[-1]["value"]).split(":")[0])
    for workload in workloads(render("base")):
        assert pod_spec(workload)["securityContext"]["runAsUser"] == uid


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_meet_the_restricted_pod_security_standard(overlay: str) -> None:
    docs = render(overlay)
    namespace = by_kind(docs, "Namespace")["incidentflow"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    allowed_volumes = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod_context = spec.get("securityContext", {})
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), name
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= allowed_volumes, (name, volume)
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container.get("securityContext", {})
            non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
            assert non_root is True, (name, container["name"])
            assert context.get("allowPrivilegeEscalation") is False, (name, container["name"])
            assert context.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not context.get("capabilities", {}).get("add"), name
            assert not context.get("privileged"), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_budgets_select_their_pods(overlay: str) -> None:
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    budgets = by_kind(docs, "PodDisruptionBudget")
    for name in SERVICES:
        labels = pod_labels(deployments[name])
        service = services[name]
        assert matches({"matchLabels": service["spec"]["selector"]}, labels), name
        container = app_container(deployments[name])
        # Each service's HTTP port; ingest's mail intake besides (INTAKE_SMTP_PORT).
        expected = {8000, 2525} if name == "ingest" else {8000}
        ports = {container_port(container, p["targetPort"]) for p in service["spec"]["ports"]}
        assert ports == expected, name
        assert matches(budgets[name]["spec"]["selector"], labels), name
        others = [
            other
            for other, d in deployments.items()
            if other != name and matches(budgets[name]["spec"]["selector"], pod_labels(d))
        ]
        assert others == [], f"budget {name} also selects {others}"
        assert "maxUnavailable" in budgets[name]["spec"] or "minAvailable" in budgets[name]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_classifier_and_notifier_autoscale(overlay: str) -> None:
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    for name, hpa in by_kind(docs, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        # A replicas field would fight the autoscaler on every apply.
        assert "replicas" not in deployments[name]["spec"], name
        assert "cpu" in app_container(deployments[name])["resources"]["requests"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_do_not_migrate_on_start(overlay: str) -> None:
    docs = render(overlay)
    configs = by_kind(docs, "ConfigMap")
    for name in SERVICES:
        container = app_container(by_kind(docs, "Deployment")[name])
        env = {}
        for source in container.get("envFrom", []):
            env.update(configs[source["configMapRef"]["name"]]["data"])
        env.update({e["name"]: e.get("value") for e in container.get("env", [])})
        assert env.get("MIGRATE_ON_START") == "false", name
    job = by_kind(docs, "Job")["migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay: str) -> None:
    docs = render(overlay)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    # prod takes the app Secrets from outside the repository (see the overlay).
    external = (
        {("Secret", "incidentflow-secrets")}
        | {("Secret", f"incidentflow-{name}") for name in SERVICES}
        if overlay == "prod"
        else set()
    )
    for workload in workloads(docs):
        spec = pod_spec(workload)
        wanted = {("ServiceAccount", spec.get("serviceAccountName", "default"))} - {
            ("ServiceAccount", "default")
        }
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    wanted.add(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    wanted.add(("Secret", source["secretRef"]["name"]))
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                    wanted.add(("Secret", ref["secretKeyRef"]["name"]))
                if "configMapKeyRef" in ref and not ref["configMapKeyRef"].get("optional"):
                    wanted.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
        missing = wanted - names - external
        assert not missing, f"{workload['metadata']['name']} refers to {missing}"


# --- network policies ----------------------------------------------------------------------


def policies_for(docs: Docs, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        p
        for p in by_kind(docs, "NetworkPolicy").values()
        if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and matches(p["spec"]["podSelector"], labels)
    ]


def reaches_from_outside(rule: dict[str, Any]) -> bool:
    """An ingress rule open to anything beyond this namespace's pods."""
    peers = rule.get("from")
    if not peers:
        return True
    return any("ipBlock" in peer or "namespaceSelector" in peer for peer in peers)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_ingest_is_reachable_from_outside(overlay: str) -> None:
    docs = render(overlay)
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        policies = policies_for(docs, pod_labels(workload))
        assert any(not p["spec"].get("ingress") for p in policies), f"{name}: no default deny"
        open_rules = [
            rule
            for p in policies
            for rule in p["spec"].get("ingress", [])
            if reaches_from_outside(rule)
        ]
        if name == "ingest":
            ports = {port["port"] for rule in open_rules for port in rule.get("ports", [])}
            assert ports == {8000, 2525}, "ingest's HTTP port and its mail intake, and only them"
        else:
            assert open_rules == [], f"{name} is reachable from outside"
    for service in by_kind(docs, "Service").values():
        kind = service["spec"].get("type", "ClusterIP")
        assert kind == "ClusterIP", f"{service['metadata']['name']} is exposed as {kind}"
    assert not [d for d in docs if d["kind"] in {"Ingress", "Gateway", "HTTPRoute"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_management_ui_is_not_exposed(overlay: str) -> None:
    docs = render(overlay)
    for service in by_kind(docs, "Service").values():
        for port in service["spec"]["ports"]:
            assert 15672 not in (port["port"], port.get("targetPort")), service["metadata"]
            assert port.get("targetPort") != "management", service["metadata"]
    # The management API admits the migrate Job alone (provision-roles creates users there).
    for policy in by_kind(docs, "NetworkPolicy").values():
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: a rule for every port"
            if {port["port"] for port in rule["ports"]} & {15672, "management"}:
                assert rule["from"] == [
                    {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "migration"}}}
                ], policy["metadata"]["name"]


# --- overlays ------------------------------------------------------------------------------


def test_dev_runs_rabbitmq_postgres_and_mailpit_in_cluster() -> None:
    docs = render("dev")
    statefulsets = by_kind(docs, "StatefulSet")
    assert {"rabbitmq", "postgres"} <= set(statefulsets)
    rabbitmq = statefulsets["rabbitmq"]
    assert "management" in app_container(rabbitmq)["image"]
    (mount,) = [
        m
        for m in app_container(rabbitmq)["volumeMounts"]
        if m["mountPath"] == "/etc/rabbitmq/enabled_plugins"
    ]
    (volume,) = [v for v in pod_spec(rabbitmq)["volumes"] if v["name"] == mount["name"]]
    plugins = by_kind(docs, "ConfigMap")[volume["configMap"]["name"]]["data"][mount["subPath"]]
    assert {"rabbitmq_management", "rabbitmq_shovel_management"} <= set(
        plugins.strip().removeprefix("[").removesuffix("].").split(",")
    )
    for name in ("rabbitmq", "postgres"):
        assert statefulsets[name]["spec"]["volumeClaimTemplates"], f"{name} keeps its data"
    assert "mailpit" in by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    assert {"rabbitmq", "postgres", "mailpit"} <= set(services)
    # The app Secret and config point at these in-cluster services.
    secret = by_kind(docs, "Secret")["incidentflow-secrets"]["stringData"]
    assert "@rabbitmq:5672" in secret["RABBITMQ_URL"]
    assert "@postgres:5432/" in secret["DATABASE_URL"]
    config = next(c for n, c in by_kind(docs, "ConfigMap").items() if n.startswith("incidentflow"))
    assert config["data"]["SMTP_HOST"] == "mailpit"
    assert config["data"]["ENV"] == "development"


def test_dev_infrastructure_accepts_only_what_the_services_need() -> None:
    docs = render("dev")
    deployments = by_kind(docs, "Deployment")
    job = by_kind(docs, "Job")["migrate"]
    statefulsets = by_kind(docs, "StatefulSet")

    def allowed(target: dict[str, Any], client: dict[str, Any], port: int) -> bool:
        for policy in policies_for(docs, pod_labels(target)):
            for rule in policy["spec"].get("ingress", []):
                ports = {p["port"] for p in rule.get("ports", [])}
                peers = [p["podSelector"] for p in rule.get("from", []) if "podSelector" in p]
                if port in ports and any(matches(s, pod_labels(client)) for s in peers):
                    return True
        return False

    for name in SERVICES:
        assert allowed(statefulsets["rabbitmq"], deployments[name], 5672), name
        assert allowed(statefulsets["postgres"], deployments[name], 5432), name
    assert allowed(statefulsets["postgres"], job, 5432)
    assert allowed(deployments["mailpit"], deployments["notifier"], 1025)
    assert not allowed(deployments["mailpit"], deployments["ingest"], 1025)


def test_prod_uses_external_broker_and_database_through_secrets() -> None:
    docs = render("prod")
    assert not by_kind(docs, "StatefulSet"), "no in-cluster broker or database"
    assert not {"rabbitmq", "postgres", "mailpit"} & set(by_kind(docs, "Deployment"))
    assert not by_kind(docs, "Secret"), "no Secret is committed for production"
    for name in SERVICES:
        env = {e["name"]: e for e in app_container(by_kind(docs, "Deployment")[name])["env"]}
        for variable in ("RABBITMQ_URL", "DATABASE_URL"):
            assert env[variable]["valueFrom"]["secretKeyRef"]["name"] == f"incidentflow-{name}"
    config = next(c for n, c in by_kind(docs, "ConfigMap").items() if n.startswith("incidentflow"))
    assert config["data"]["ENV"] == "production"


def test_prod_runs_at_least_two_pods_per_step() -> None:
    docs = render("prod")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    for name, deployment in by_kind(docs, "Deployment").items():
        replicas = (
            hpas[name]["spec"]["minReplicas"] if name in hpas else deployment["spec"]["replicas"]
        )
        assert replicas >= 2, name


def test_prod_pins_a_released_image() -> None:
    for workload in workloads(render("prod")):
        image = app_container(workload)["image"]
        tag = image.rsplit(":", 1)[-1]
        assert tag not in {"latest", "local"} and "/" in image, image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_logs_in_with_its_own_secret_and_the_job_provisions_them(
    overlay: str,
) -> None:
    """Only the migrate Job holds the administrators' logins; it runs provision-roles with
    every service's login mounted, after the migrations."""
    docs = render(overlay)
    for name in SERVICES:
        env = {e["name"]: e for e in app_container(by_kind(docs, "Deployment")[name])["env"]}
        for variable in ("RABBITMQ_URL", "DATABASE_URL"):
            assert env[variable]["valueFrom"]["secretKeyRef"]["name"] == f"incidentflow-{name}"
    job = pod_spec(by_kind(docs, "Job")["migrate"])
    assert [c["command"] for c in job["initContainers"]] == [["incidentflow", "migrate"]]
    (provision,) = job["containers"]
    assert provision["command"] == [
        "incidentflow",
        "provision-roles",
        "--credentials",
        "/credentials",
    ]
    (volume,) = [v for v in job["volumes"] if v["name"] == "credentials"]
    paths = {
        item["path"]
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    assert paths == {
        f"{name}/{key}" for name in SERVICES for key in ("database_url", "rabbitmq_url")
    }
