"""deploy/compose.yaml: valid per the compose specification, and the whole system in it."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
from deploy_support import (
    ENV_EXAMPLE,
    SERVICES,
    commented_env_names,
    compose,
    compose_variables,
    incidentflow_services,
    read_env_file,
    settings_env_names,
)

INFRASTRUCTURE = {"rabbitmq", "postgres", "mailpit", "migrate", "provision-roles"}
ONE_SHOT = {"migrate", "provision-roles"}


def compose_schema() -> dict[str, Any]:
    # The compose-spec schema as check-jsonschema vendors it: available offline.
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema: dict[str, Any] = json.loads(schema_file.read_text())
    return schema


def schema_errors(spec: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(spec)
    ]


def test_validates_against_the_compose_specification() -> None:
    assert compose_schema()["title"] == "Compose Specification"
    assert schema_errors(compose()) == []


def test_validates_with_the_example_environment() -> None:
    assert schema_errors(compose(read_env_file(ENV_EXAMPLE))) == []


def test_the_schema_check_rejects_a_broken_file() -> None:
    # Guards the guard: a misspelt key must not pass silently.
    broken = compose()
    broken["services"]["ingest"]["restrat"] = broken["services"]["ingest"].pop("restart")
    assert schema_errors(broken)


def test_names_every_service() -> None:
    services = compose()["services"]
    assert set(services) == INFRASTRUCTURE | set(SERVICES)


def test_every_variable_has_a_default_and_an_example() -> None:
    example = read_env_file(ENV_EXAMPLE)
    for name, default in compose_variables().items():
        assert default is not None, f"${{{name}}} has no default: `up` must work without .env"
        assert name in example, f"{name} is missing from {ENV_EXAMPLE.name}"


def test_example_environment_names_only_real_settings() -> None:
    # .env.example is both compose's interpolation file and the services' env_file.
    used = set(compose_variables())
    settings = settings_env_names()
    for name in read_env_file(ENV_EXAMPLE):
        assert name in used or name in settings, f"{ENV_EXAMPLE.name}: {name} is read by nothing"
    for name in commented_env_names(ENV_EXAMPLE):
        assert name in settings, f"{ENV_EXAMPLE.name}: {name} is no incidentflow setting"


def test_rabbitmq_has_the_management_ui_and_credentials_from_the_environment() -> None:
    rabbitmq = compose()["services"]["rabbitmq"]
    assert "management" in rabbitmq["image"]
    assert any(str(port).endswith(":15672") for port in rabbitmq["ports"])
    assert "healthcheck" in rabbitmq
    # Shovel backs the UI's "Move messages", the documented way to replay dead letters.
    (mount,) = [c for c in rabbitmq["configs"] if c["target"] == "/etc/rabbitmq/enabled_plugins"]
    plugins = compose()["configs"][mount["source"]]["content"]
    assert re.fullmatch(r"\[[a-z_,]+\]\.\s*", plugins), plugins
    assert {"rabbitmq_management", "rabbitmq_shovel_management"} <= set(
        plugins.strip().removeprefix("[").removesuffix("].").split(",")
    )
    credentials = {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"}
    assert credentials <= set(rabbitmq["environment"])
    source = compose_variables()
    assert credentials <= set(source), "credentials come from the environment (.env)"
    changed = compose({"RABBITMQ_DEFAULT_USER": "ops", "RABBITMQ_DEFAULT_PASS": "s3cret"})
    assert changed["services"]["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"] == "s3cret"
    for name in incidentflow_services(changed):
        url = changed["services"][name]["environment"].get("RABBITMQ_URL")
        assert url is None or url.startswith("amqp://ops:s3cret@rabbitmq:5672"), (name, url)


def test_postgres_has_a_volume_and_a_healthcheck() -> None:
    spec = compose()
    postgres = spec["services"]["postgres"]
    assert "healthcheck" in postgres and "pg_isready" in str(postgres["healthcheck"]["test"])
    volumes = [str(v).split(":")[0] for v in postgres["volumes"]]
    assert any(v in spec.get("volumes", {}) for v in volumes), "a named volume for the data"


def test_mailpit_is_the_dev_inbox() -> None:
    spec = compose()
    mailpit = spec["services"]["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit")
    assert any(str(port).endswith(":8025") for port in mailpit["ports"]), "the web UI"
    notifier = spec["services"]["notifier"]["environment"]
    assert notifier["SMTP_HOST"] == "mailpit" and notifier["SMTP_PORT"] == "1025"


def test_migration_runs_once_before_the_services() -> None:
    services = compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["incidentflow", "migrate"]
    assert migrate.get("restart", "no") == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in SERVICES:
        service = services[name]
        depends = service["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["provision-roles"]["condition"] == "service_completed_successfully", name
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert service["environment"]["MIGRATE_ON_START"] == "false", name


def test_services_restart_and_run_hardened() -> None:
    spec = compose()
    for name in SERVICES:
        service = spec["services"][name]
        assert service["restart"] in {"always", "unless-stopped", "on-failure"}, name
        assert service.get("read_only") is True, name
        assert "/tmp" in service.get("tmpfs", []), name
        assert "ALL" in service.get("cap_drop", []), name
    for name in INFRASTRUCTURE - ONE_SHOT:
        assert spec["services"][name]["restart"] in {"always", "unless-stopped"}, name


def test_services_are_built_from_the_one_image() -> None:
    spec = compose()
    images = {spec["services"][name]["image"] for name in [*SERVICES, *ONE_SHOT]}
    assert len(images) == 1
    for name in incidentflow_services(spec):
        build = spec["services"][name]["build"]
        assert build == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name


def test_only_ingest_is_published_among_the_services() -> None:
    spec = compose()
    published = {name for name in SERVICES if spec["services"][name].get("ports")}
    assert published == {"ingest"}
    assert any(str(port).endswith(":8000") for port in spec["services"]["ingest"]["ports"])


def test_each_service_logs_in_with_its_own_credentials_only() -> None:
    """The administrators' URLs reach the one-shot jobs alone; each service mounts its own
    folder of the credentials provision-roles wrote, and no other."""
    spec = compose()
    provision = spec["services"]["provision-roles"]
    assert provision["command"] == [
        "incidentflow",
        "provision-roles",
        "--credentials",
        "/credentials",
    ]
    assert provision["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "credentials:/credentials" in provision["volumes"]
    for name in SERVICES:
        service = spec["services"][name]
        environment = service["environment"]
        assert "DATABASE_URL" not in environment and "RABBITMQ_URL" not in environment, name
        assert environment["SECRETS_DIR"] == "/run/credentials", name
        mounts = [
            v for v in service["volumes"] if isinstance(v, dict) and v["source"] == "credentials"
        ]
        assert mounts == [
            {
                "type": "volume",
                "source": "credentials",
                "target": "/run/credentials",
                "read_only": True,
                "volume": {"subpath": name},
            }
        ], name
