"""provision-roles' credentials files: written whole with new passwords, or taken as they are,
but never the administrator's own user, nor one user for two services."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from contracts.grants import SERVICES, grants_of
from incidentflow.provisioning import _one_user_each, management_url, service_credentials

ADMIN = "postgresql://owner:owner-secret@db.internal:5432/incidentflow"


def test_missing_files_are_written_with_a_password_of_their_own(tmp_path: Path) -> None:
    logins = _one_user_each(tmp_path, "database_url", ADMIN, "incidentflow")
    assert [who.user for _, _, who in logins] == [f"incidentflow_{s}" for s in SERVICES]
    assert len({who.password for _, _, who in logins}) == len(SERVICES)
    for service in SERVICES:
        path = tmp_path / service / "database_url"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().startswith(f"postgresql://incidentflow_{service}:")
        assert path.read_text().rstrip().endswith("@db.internal:5432/incidentflow")
    # Again: the same logins, nothing rewritten.
    again = _one_user_each(tmp_path, "database_url", ADMIN, "incidentflow")
    assert [who for _, _, who in again] == [who for _, _, who in logins]


def test_a_file_naming_the_administrator_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sentiment").mkdir()
    (tmp_path / "sentiment" / "database_url").write_text(ADMIN)
    with pytest.raises(ValueError, match="administrator"):
        service_credentials(tmp_path, grants_of("sentiment"), "database_url", ADMIN, "x")


def test_two_services_with_one_user_are_refused(tmp_path: Path) -> None:
    shared = "postgresql://shared:pw-one@db.internal:5432/incidentflow"
    for service in ("sentiment", "classifier"):
        (tmp_path / service).mkdir()
        (tmp_path / service / "database_url").write_text(shared)
    with pytest.raises(ValueError, match="same user"):
        _one_user_each(tmp_path, "database_url", ADMIN, "incidentflow")


def test_the_management_api_over_tls_when_the_broker_is() -> None:
    assert management_url("amqps://admin:pw@mq.internal:5671/").startswith("https://")
    assert management_url("amqp://admin:pw@mq.internal:5672/").startswith("http://")
