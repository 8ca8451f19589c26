"""``incidentflow api-key``: the key is printed once, the entry holds only its hash."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from incidentflow_tools.cli import app
from services.ingest.keys import ApiKey, hash_key
from services.ingest.settings import IngestSettings


def test_new_key_and_its_entry() -> None:
    result = CliRunner().invoke(
        app, ["api-key", "new", "--name", "web", "--scopes", "submit,operate"]
    )
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines())
    key, entry = lines["key"].strip(), lines["entry"].strip()
    assert len(key) >= 40 and key not in entry
    parsed = ApiKey.parse(entry)
    assert parsed.name == "web" and parsed.scopes == {"submit", "operate"}
    assert parsed.digest == hash_key(key)


def test_hash_reads_the_key_on_stdin() -> None:
    result = CliRunner().invoke(
        app, ["api-key", "hash", "--name", "ops", "--scopes", "operate"], input="k3y\n"
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"ops:operate:{hash_key('k3y')}"


def test_unknown_scope_is_refused() -> None:
    result = CliRunner().invoke(app, ["api-key", "new", "--name", "x", "--scopes", "admin"])
    assert result.exit_code != 0


def test_setting_takes_json_or_comma_lists() -> None:
    a, b = f"a:submit:{hash_key('1')}", f"b:operate+submit:{hash_key('2')}"
    assert len(IngestSettings(api_keys=f"{a},{b}").api_keys) == 2
    assert len(IngestSettings(api_keys=f'["{a}", "{b}"]').api_keys) == 2
    with pytest.raises(ValueError, match="name:scope1"):
        IngestSettings(api_keys="web:submit:plaintext-key")
