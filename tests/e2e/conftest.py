"""The six services and the dev inbox as real processes, against the test broker and database."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from incidentflow.stack import Stack
from tests.conftest import free_port, free_port_block

REMINDER_DELAY_SECONDS = 5


@pytest.fixture(scope="session")
def stack(
    rabbitmq_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    var_dir = tmp_path_factory.mktemp("stack")
    stack = Stack(
        var_dir=var_dir,
        base_port=free_port_block(6),
        mail_port=free_port(),
        env={
            "RABBITMQ_URL": rabbitmq_url,
            "DATABASE_URL": database_url,
            "REMINDER_DELAY_SECONDS": str(REMINDER_DELAY_SECONDS),
            # No prebuilt model: the classifier trains on the shipped data set at start.
            "CLASSIFIER_MODEL_DIR": str(var_dir / "no-model"),
            "LOG_LEVEL": "INFO",
        },
    )
    stack.start()
    try:
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


def read_inbox(directory: Path) -> list[EmailMessage]:
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(directory.glob("*.eml"))
    ]
