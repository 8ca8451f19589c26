"""Reads the deployment files the way their tools do: kustomize renders, compose interpolates.

Shared by the tests in this folder; nothing here needs a cluster, a Docker engine, RabbitMQ or
Postgres.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

from incidentflow_tools import stack

# The six services and their ASGI apps, as the local stack runs them.
SERVICES: dict[str, str] = dict(stack.SERVICES)
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
KUSTOMIZATIONS = ("base", *OVERLAYS)
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A command-line tool installed in this virtualenv by the dev extras."""
    path = BIN / name
    assert path.exists(), f"{name} is not installed in {BIN}: pip install -e '.[dev]'"
    return str(path)


@functools.cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    """The resources `kubectl kustomize` renders for the base or an overlay (by name)."""
    path = K8S / kustomization if kustomization == "base" else K8S / "overlays" / kustomization
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kustomize {kustomization} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def workloads(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    kinds = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
    return [d for d in docs if d["kind"] in kinds]


def is_incidentflow_image(image: str) -> bool:
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return name == "incidentflow"


# --- compose -------------------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^{}$]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def compose_source() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_variables() -> dict[str, str | None]:
    """Every ${VAR} compose.yaml interpolates, with its `:-` default (None when it has none)."""
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer(COMPOSE.read_text()):
        name = match["braced"] or match["named"]
        if name:
            default = match["arg"] if match["op"] in (":-", "-") else None
            found.setdefault(name, default)
    return found


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation over a loaded compose file (values, not keys)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        if not name:
            raise ValueError(f"invalid interpolation in {value!r}")
        op, arg = match["op"], match["arg"] or ""
        present = name in env
        current = env.get(name, "")
        if op == ":-":
            return current or arg
        if op == "-":
            return current if present else arg
        if op in (":?", "?"):
            if not (current if op == ":?" else present):
                raise ValueError(f"required variable {name} is not set: {arg}")
            return current
        if op == ":+":
            return arg if current else ""
        if op == "+":
            return arg if present else ""
        return current

    return _VARIABLE.sub(substitute, value)


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """compose.yaml as compose sees it after interpolation with `env` (defaults when empty)."""
    spec: dict[str, Any] = interpolate(compose_source(), env or {})
    return spec


def read_env_file(path: Path) -> dict[str, str]:
    """A dotenv file's assignments (comments and blank lines skipped)."""
    values = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not NAME=value: {raw!r}"
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f"{path.name}:{number}: {name!r}"
        values[name] = value
    return values


def commented_env_names(path: Path) -> set[str]:
    """Names in `# NAME=` lines: optional settings a deployer may switch on."""
    pattern = re.compile(r"^#\s*([A-Z][A-Z0-9_]*)=")
    return {m[1] for line in path.read_text().splitlines() if (m := pattern.match(line.strip()))}


def incidentflow_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in spec["services"].items()
        if is_incidentflow_image(service.get("image", ""))
    }


# --- the image -----------------------------------------------------------------------------


@functools.cache
def dockerfile() -> tuple[dict[str, Any], ...]:
    """The Dockerfile's instructions, each with its stage's index and name."""
    parser = DockerfileParser(path=str(DOCKERFILE))
    stage, names, instructions = -1, [], []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            stage += 1
            words = item["value"].split()
            names.append(words[2] if len(words) >= 3 and words[1].lower() == "as" else str(stage))
        instructions.append({**item, "stage": stage, "stage_name": names[stage] if names else ""})
    return tuple(instructions)


# --- settings ------------------------------------------------------------------------------


@functools.cache
def settings_env_names() -> frozenset[str]:
    """Every environment variable name some incidentflow settings class reads."""
    from incidentflow.settings import CommonSettings, env_names
    from tests.settings_classes import OPERATOR_SETTINGS, SERVICE_SETTINGS

    names: set[str] = set()
    classes: list[type[CommonSettings]] = [CommonSettings, *SERVICE_SETTINGS, *OPERATOR_SETTINGS]
    for cls in classes:
        names.update(env_names(cls, every_alias=True))
    return frozenset(names)


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod's labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels
