"""The image, compose and Kubernetes run the real entry points with real setting names."""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from deploy_support import (
    DOCKERFILE,
    OVERLAYS,
    REPO,
    SERVICES,
    by_kind,
    compose,
    dockerfile,
    incidentflow_services,
    is_incidentflow_image,
    pod_spec,
    render,
    settings_env_names,
    tool,
    workloads,
)

UVICORN_TARGET = re.compile(r"services\.(?P<service>[a-z_]+)\.app:(?P<attribute>app)")
SERVICE_ARGS = ["--host", "0.0.0.0", "--port", "8000"]
# Variables the image sets for Python itself, not for incidentflow's settings.
RUNTIME_VARIABLES = re.compile(r"^(PATH|PYTHON[A-Z_]*|PIP_[A-Z_]*)$")


@functools.cache
def cli_commands() -> frozenset[str]:
    """The subcommands `incidentflow --help` lists."""
    result = subprocess.run(
        [tool("incidentflow"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    commands, in_commands = set(), False
    for line in result.stdout.splitlines():
        if re.search(r"\bCommands\b", line):
            in_commands = True
            continue
        if in_commands:
            match = re.match(r"^[\s│|]*([a-z][a-z0-9-]*)\s{2,}\S", line)
            if match:
                commands.add(match[1])
            elif re.match(r"^\s*[╰└]", line):
                break
    assert {"migrate", "provision"} <= commands, f"could not read the commands:\n{result.stdout}"
    return frozenset(commands)


def module_defines(path: Path, attribute: str) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else ([node.target] if isinstance(node, ast.AnnAssign) else [])
        )
        if any(isinstance(t, ast.Name) and t.id == attribute for t in targets):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
            node.name == attribute
        ):
            return True
    return False


def dockerfile_commands() -> list[tuple[str, list[str]]]:
    """Every command the image runs: its CMD, and each `incidentflow ...` in a RUN."""
    found = []
    for item in dockerfile():
        value = str(item["value"])
        if item["instruction"] == "CMD":
            found.append((f"Dockerfile:{item['startline'] + 1} CMD", json.loads(value)))
        if item["instruction"] == "RUN":
            for command in re.split(r"&&|;|\|\|", value):
                words = shlex.split(command)
                if words and words[0] == "incidentflow":
                    found.append((f"Dockerfile:{item['startline'] + 1} RUN", words))
    return found


def compose_commands() -> list[tuple[str, list[str]]]:
    spec = compose()
    found = []
    for name, service in incidentflow_services(spec).items():
        command = service.get("command")
        assert command is not None, f"compose service {name}: say which command it runs"
        found.append(
            (f"compose {name}", command if isinstance(command, list) else shlex.split(command))
        )
    return found


def k8s_commands(overlay: str) -> list[tuple[str, list[str]]]:
    found = []
    for workload in workloads(render(overlay)):
        for container in pod_spec(workload)["containers"] + pod_spec(workload).get(
            "initContainers", []
        ):
            if not is_incidentflow_image(container["image"]):
                continue
            argv = container.get("command", []) + container.get("args", [])
            assert argv, f"{workload['metadata']['name']}: say which command it runs"
            found.append((f"{overlay} {workload['kind']}/{workload['metadata']['name']}", argv))
    return found


def commands_in(source: str) -> list[tuple[str, list[str]]]:
    if source == "Dockerfile":
        return dockerfile_commands()
    if source == "compose":
        return compose_commands()
    return k8s_commands(source)


def entry_point_problem(where: str, argv: list[str]) -> str | None:
    """Why `argv` is not a real incidentflow entry point, or None when it is."""
    program = argv[0]
    if program == "uvicorn":
        target = UVICORN_TARGET.fullmatch(argv[1])
        if not target:
            return f"{where}: not a services.<name>.app:app target: {argv[1]}"
        module = REPO / "services" / target["service"] / "app.py"
        if not module.is_file():
            return f"{where}: {module.relative_to(REPO)} does not exist"
        if not module_defines(module, target["attribute"]):
            return f"{where}: {module.relative_to(REPO)} defines no `{target['attribute']}`"
        if argv[2:] != SERVICE_ARGS:
            return f"{where}: run as {' '.join(SERVICE_ARGS)}, not {' '.join(argv[2:])}"
        return None
    if program == "incidentflow":
        if len(argv) < 2 or argv[1] not in cli_commands():
            return f"{where}: `{' '.join(argv)}` is not a CLI command"
        return None
    return f"{where}: unknown entry point {argv}"


def test_commands_are_found_everywhere() -> None:
    assert len(dockerfile_commands()) >= 2  # the CMD and `incidentflow provision`
    # the services, migrate and provision-roles
    assert len(compose_commands()) == len(SERVICES) + 2
    for overlay in OVERLAYS:
        assert len(k8s_commands(overlay)) == len(SERVICES) + 2


@pytest.mark.parametrize("source", ["Dockerfile", "compose", *OVERLAYS])
def test_every_command_is_a_real_entry_point(source: str) -> None:
    problems = [entry_point_problem(where, argv) for where, argv in commands_in(source)]
    assert [p for p in problems if p] == []


def test_the_entry_point_check_rejects_wrong_commands() -> None:
    # Guards the guard.
    assert entry_point_problem("x", ["uvicorn", "services.nope.app:app", *SERVICE_ARGS])
    assert entry_point_problem("x", ["uvicorn", "services.ingest.app:application"])
    assert entry_point_problem("x", ["incidentflow", "migrat"])
    assert entry_point_problem("x", ["python", "-m", "services.ingest.app"])
    assert not entry_point_problem("x", ["uvicorn", "services.ingest.app:app", *SERVICE_ARGS])
    assert not entry_point_problem("x", ["incidentflow", "migrate"])


def test_each_deployment_runs_each_service_once() -> None:
    expected = sorted(SERVICES.values())
    compose_apps = sorted(argv[1] for _, argv in compose_commands() if argv[0] == "uvicorn")
    assert compose_apps == expected
    for overlay in OVERLAYS:
        deployments = by_kind(render(overlay), "Deployment")
        for name, app in SERVICES.items():
            container = pod_spec(deployments[name])["containers"][0]
            assert container["command"][1] == app, (overlay, name)
    for name, app in SERVICES.items():
        assert compose()["services"][name]["command"][1] == app, name


def test_migrations_run_through_the_cli_everywhere() -> None:
    assert compose()["services"]["migrate"]["command"] == ["incidentflow", "migrate"]
    for overlay in OVERLAYS:
        job = by_kind(render(overlay), "Job")["migrate"]
        assert pod_spec(job)["initContainers"][0]["command"] == ["incidentflow", "migrate"]


def test_cli_help_lists_the_commands_the_deployment_uses() -> None:
    assert {"migrate", "provision", "provision-roles", "topology"} <= cli_commands()


# --- setting names -------------------------------------------------------------------------


def test_dockerfile_sets_only_real_settings() -> None:
    settings = settings_env_names()
    for item in dockerfile():
        if item["instruction"] != "ENV":
            continue
        for word in shlex.split(str(item["value"])):
            name = word.partition("=")[0]
            assert RUNTIME_VARIABLES.match(name) or name in settings, (
                f"{DOCKERFILE.name}: ENV {name} is read by nothing"
            )


def test_compose_sets_only_real_settings() -> None:
    settings = settings_env_names()
    for name, service in incidentflow_services(compose()).items():
        for variable in service.get("environment", {}):
            assert variable in settings, f"compose {name}: {variable} is no incidentflow setting"


@pytest.mark.parametrize("kustomization", ["base", *OVERLAYS])
def test_kubernetes_sets_only_real_settings(kustomization: str) -> None:
    settings = settings_env_names()
    docs = render(kustomization)
    configs = by_kind(docs, "ConfigMap")
    secrets = by_kind(docs, "Secret")
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        for container in pod_spec(workload)["containers"]:
            if not is_incidentflow_image(container["image"]):
                continue
            for env in container.get("env", []):
                assert env["name"] in settings, f"{name}: {env['name']} is no incidentflow setting"
                key_ref = env.get("valueFrom", {}).get("secretKeyRef")
                if key_ref:
                    assert key_ref["key"] in settings, f"{name}: secret key {key_ref['key']}"
            for source in container.get("envFrom", []):
                config = configs[source["configMapRef"]["name"]]
                for key in config["data"]:
                    assert key in settings, f"ConfigMap {config['metadata']['name']}: {key}"
    if "incidentflow-secrets" in secrets:
        for key in secrets["incidentflow-secrets"].get("stringData", {}):
            assert key in settings, f"Secret incidentflow-secrets: {key}"


# --- the operations guide ------------------------------------------------------------------

OPERATIONS = REPO / "docs" / "operations.md"


def test_operations_guide_names_every_queue_and_dead_letter_queue() -> None:
    from contracts.topology import DEAD_LETTERS, EVENTS, WORK_ROUTES

    text = OPERATIONS.read_text()
    for name in (EVENTS.name, DEAD_LETTERS.name):
        assert name in text, f"{OPERATIONS.name} does not name exchange {name}"
    queues = set()
    for route in WORK_ROUTES:
        for queue in (route.queue_name, route.dead_letter_queue.name):
            assert queue in text, f"{OPERATIONS.name} does not name queue {queue}"
            queues.add(queue)
    # And every queue name it mentions in code spans is a real one.
    steps = "|".join(SERVICES)
    for span in re.findall(r"`([^`\n]+)`", text):
        if re.fullmatch(rf"(?:{steps})\.[a-z-]+(?:\.dlq)?", span):
            assert span in queues, f"{OPERATIONS.name}: `{span}` is not a queue"


def test_operations_guide_shows_only_real_cli_commands() -> None:
    text = OPERATIONS.read_text()
    spans = re.findall(r"`([^`\n]+)`", text)
    lines = [line.strip() for line in text.splitlines()]
    shown = [s for s in spans + lines if s.startswith("incidentflow ")]
    assert shown, f"{OPERATIONS.name} shows no incidentflow command"
    for command in shown:
        subcommand = command.split()[1]
        if subcommand.startswith("-"):
            continue
        assert subcommand in cli_commands(), f"{OPERATIONS.name}: `{command}` is no CLI command"
