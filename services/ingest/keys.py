"""Ingest API keys: the configured entry format, hashing, and the ``incidentflow api-key`` commands.

A key is shown once, when it is made; ingest is configured with ``name:scopes:sha256hex``
entries only, so a leaked configuration does not leak a usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sys
from typing import Annotated, Literal, get_args

import typer
from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic_settings import SettingsConfigDict

from incidentflow.settings import CommonSettings

Scope = Literal["submit", "read", "operate"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9_.@-]{1,64}):(?P<scopes>[a-z+]+):(?P<digest>[0-9a-f]{64})$"
)


def hash_key(key: str, secret: str | None = None) -> str:
    """The digest an INGEST_API_KEYS entry holds for ``key``: an HMAC-SHA256 keyed with the
    server's INGEST_API_KEY_SECRET when there is one, else a SHA-256. Keys from `api-key new`
    are 256-bit random, beyond brute force either way; one brought to `api-key hash` may be
    weak, and with the secret a leaked list of entries cannot be tried against guesses."""
    if secret:
        return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKey(BaseModel):
    """One configured key: who it is, what it may do, and the SHA-256 of the key."""

    model_config = ConfigDict(frozen=True)

    name: str
    scopes: frozenset[Scope]
    digest: str

    @classmethod
    def parse(cls, entry: str) -> ApiKey:
        match = ENTRY.match(entry.strip())
        if match is None:
            raise ValueError(
                "an INGEST_API_KEYS entry is name:scope1+scope2:sha256hex "
                "(see `incidentflow api-key new`)"
            )
        scopes = match["scopes"].split("+")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scope {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        return cls(name=match["name"], scopes=frozenset(scopes), digest=match["digest"])

    def entry(self) -> str:
        return f"{self.name}:{'+'.join(sorted(self.scopes))}:{self.digest}"


def _parse_scopes(scopes: str) -> frozenset[Scope]:
    wanted = {s.strip() for s in scopes.replace("+", ",").split(",") if s.strip()}
    unknown = sorted(wanted - set(SCOPES))
    if unknown or not wanted:
        raise typer.BadParameter(f"scopes are a comma list of: {', '.join(SCOPES)}")
    return frozenset(s for s in SCOPES if s in wanted)


class _KeySecret(CommonSettings):
    """INGEST_API_KEY_SECRET, read the way ingest reads it (environment, ``_FILE``,
    SECRETS_DIR), so the CLI prints entries ingest accepts."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    api_key_secret: SecretStr | None = None


def _entry(name: str, scopes: str, key: str) -> str:
    configured = _KeySecret().api_key_secret
    digest = hash_key(key, configured.get_secret_value() if configured else None)
    entry = ApiKey(name=name, scopes=_parse_scopes(scopes), digest=digest).entry()
    try:
        ApiKey.parse(entry)  # a name the entry cannot carry fails here, not at deploy time
    except ValueError as exc:
        raise typer.BadParameter("a name is 1-64 of A-Z a-z 0-9 _ . @ -") from exc
    return entry


api_key_app = typer.Typer(help="Ingest API keys: make one, or hash one you have.")

NameOption = Annotated[str, typer.Option("--name", help="who holds the key, e.g. web-frontend")]
ScopesOption = Annotated[str, typer.Option("--scopes", help="comma list: submit, read, operate")]


@api_key_app.command("new")
def new(name: NameOption, scopes: ScopesOption = "submit") -> None:
    """Print a fresh random key (shown once) and the INGEST_API_KEYS entry for it."""
    key = secrets.token_urlsafe(32)
    entry = _entry(name, scopes, key)
    typer.echo(f"key:   {key}")
    typer.echo(f"entry: {entry}")


@api_key_app.command("hash")
def hash_command(name: NameOption, scopes: ScopesOption = "submit") -> None:
    """Read a key on stdin and print its INGEST_API_KEYS entry."""
    key = sys.stdin.readline().strip()
    if not key:
        raise typer.BadParameter("no key on stdin")
    typer.echo(_entry(name, scopes, key))
