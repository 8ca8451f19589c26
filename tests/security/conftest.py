"""The hostile-input suite's whole system: one stack for the suite, as `make up` starts it
(default limits, each service with its own login), on a vhost and a database of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from incidentflow_tools.sandbox import own_database, own_vhost, service_logins
from incidentflow_tools.stack import Stack
from tests.conftest import DATABASE_URL
from tests.e2e.conftest import running_stack

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVISIONED_MODELS = REPO_ROOT / "var" / "model"
DEFAULT_LIMIT = 5  # NOTIFIER_LIMIT_PER_RECIPIENT's default, 5/hour


@pytest.fixture(scope="session")
def security_database_url(database_url: str) -> Iterator[str]:
    with own_database(database_url, "security") as url:
        yield url


@pytest.fixture(scope="session")
def security_stack(
    rabbitmq_url: str, security_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {
        "DATABASE_URL": security_database_url,
        # The default, stated: the test run's environment raises it for the other tests.
        "NOTIFIER_LIMIT_PER_RECIPIENT": f"{DEFAULT_LIMIT}/hour",
    }
    if PROVISIONED_MODELS.is_dir():  # `make install` provisions them; else trained at start
        env |= {
            "CLASSIFIER_MODEL_DIR": str(PROVISIONED_MODELS),
            "SENTIMENT_MODEL_DIR": str(PROVISIONED_MODELS),
        }
    var_dir = tmp_path_factory.mktemp("security-stack")
    with own_vhost(rabbitmq_url, "security") as vhost_url:
        env["RABBITMQ_URL"] = vhost_url
        with (
            service_logins(vhost_url, security_database_url, var_dir / "credentials") as logins,
            running_stack(var_dir, env, logins) as stack,
        ):
            yield stack


@dataclass(frozen=True)
class Servers:
    """The administrator's URLs of a vhost and a database, and the services' logins there."""

    rabbitmq_url: str
    database_url: str
    logins: Path


@pytest.fixture(scope="module")
def servers(rabbitmq_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Six logins on a vhost and a database of their own; provisioning them declared the
    topology as the administrator."""
    with (
        own_vhost(rabbitmq_url, "grants") as vhost_url,
        own_database(DATABASE_URL, "grants") as database_url,
        service_logins(vhost_url, database_url, tmp_path_factory.mktemp("logins")) as logins,
    ):
        yield Servers(vhost_url, database_url, logins)
