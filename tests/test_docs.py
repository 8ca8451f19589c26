"""docs/configuration.md names every setting a service reads, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from contracts.grants import SERVICE_GRANTS, grants_of
from incidentflow.settings import CommonSettings, env_names
from tests.settings_classes import OPERATOR_SETTINGS, SERVICE_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
README = (ROOT / "README.md").read_text()
SETTINGS = [*SERVICE_SETTINGS, *OPERATOR_SETTINGS]


def documented(text: str) -> set[str]:
    """Variables named in the first column of the page's tables."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


@pytest.mark.parametrize("settings", SERVICE_SETTINGS, ids=lambda s: s.__name__)
def test_every_setting_is_documented(settings: type[BaseSettings]) -> None:
    missing = sorted(set(env_names(settings)) - documented(CONFIGURATION))
    assert missing == []


@pytest.mark.parametrize("settings", OPERATOR_SETTINGS, ids=lambda s: s.__name__)
def test_every_operator_setting_is_documented(settings: type[BaseSettings]) -> None:
    """What an operator command reads beyond the settings every service shares."""
    own = set(env_names(settings)) - set(env_names(CommonSettings))
    assert own and sorted(own - documented(CONFIGURATION)) == []


def test_every_documented_variable_is_a_setting() -> None:
    real = set().union(*(env_names(s, every_alias=True) for s in SETTINGS))
    assert sorted(documented(CONFIGURATION) - real) == []


def test_readme_names_only_real_settings() -> None:
    real = set().union(*(env_names(s, every_alias=True) for s in SETTINGS))
    assert sorted(documented(README) - real) == []
    assert "docs/configuration.md" in README


SECURITY = (ROOT / "docs" / "security.md").read_text()


@pytest.mark.parametrize("service", [g.service for g in SERVICE_GRANTS])
def test_security_page_shows_each_services_grants_as_deployed(service: str) -> None:
    """The page's table of roles against contracts/grants.py, which provision-roles applies."""
    grants = grants_of(service)
    (row,) = [line for line in SECURITY.splitlines() if line.startswith(f"| {service} |")]
    for table, privileges in grants.tables.items():
        if table not in ("audit_events", "alembic_version"):
            assert f"`{table}` {privileges}" in row
    for table, columns in grants.updates.items():
        assert f"`{table}` ({', '.join(columns)})" in row
    for event in (*grants.publishes, *grants.delays):
        assert f"`{event.routing_key()}`" in row
    named = set(re.findall(r"`([a-z_]+)`", row.split("|")[2]))
    assert named == set(grants.tables) - {"audit_events", "alembic_version"}
