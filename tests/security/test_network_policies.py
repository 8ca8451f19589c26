"""In Kubernetes each service reaches only what its job needs: egress denied by default, then
DNS, the broker and the database for all, HTTPS for those that call outside APIs, SMTP for
the notifier alone (rendered with `kubectl kustomize`, as deployed)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.deploy_support import OVERLAYS, by_kind, matches, pod_labels, render, workloads

INFRASTRUCTURE = {53, 5671, 5672, 5432}
ALLOWED_PORTS = {
    "migrate": INFRASTRUCTURE | {15672, 15671},  # provision-roles: the management API
    "retention": INFRASTRUCTURE,
    "ingest": INFRASTRUCTURE | {443, 993},  # 993: the mailbox it reads (INTAKE_IMAP_URL)
    "sentiment": INFRASTRUCTURE,
    "classifier": INFRASTRUCTURE | {443},
    "ticketing": INFRASTRUCTURE | {443},
    "notifier": INFRASTRUCTURE | {443, 465, 587},
    "reminder": INFRASTRUCTURE,
}
# The dev overlay's inbox listens on 1025 in the cluster.
DEV_EXTRA = {"notifier": {1025}}


def egress_policies(docs: Any, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        p
        for p in by_kind(docs, "NetworkPolicy").values()
        if "Egress" in p["spec"].get("policyTypes", [])
        and matches(p["spec"]["podSelector"], labels)
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_may_reach_only_the_ports_its_job_needs(overlay: str) -> None:
    docs = render(overlay)
    seen = set()
    pods = [(w["metadata"]["name"], pod_labels(w)) for w in workloads(docs)]
    pods += [
        (
            job["metadata"]["name"],
            job["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
        )
        for job in by_kind(docs, "CronJob").values()
    ]
    for name, labels in pods:
        if name not in ALLOWED_PORTS:
            continue  # the dev overlay's servers
        seen.add(name)
        policies = egress_policies(docs, labels)
        assert any(not p["spec"].get("egress") for p in policies), f"{name}: no default deny"
        rules = [rule for p in policies for rule in p["spec"].get("egress", [])]
        assert all(rule.get("ports") for rule in rules), f"{name}: a rule open on every port"
        ports = {port["port"] for rule in rules for port in rule["ports"]}
        expected = ALLOWED_PORTS[name] | (DEV_EXTRA.get(name, set()) if overlay == "dev" else set())
        assert ports == expected, name
    assert seen == set(ALLOWED_PORTS)
