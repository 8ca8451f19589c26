"""The small `make chaos`: every service killed once, RabbitMQ and Postgres restarted and
killed once each, while incidents keep arriving. Nothing accepted is lost, and no ticket,
acknowledgement email or acknowledgement text goes out twice.

It restarts and kills the servers under test through INCIDENTFLOW_SERVERS_CTL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from incidentflow_tools.stack import REPO_ROOT
from tests.e2e.test_restarts import require_servers_ctl

TEXTS = re.compile(r"^texts=(\d+) duplicate_texts=(\d+)$", re.MULTILINE)
LAST_LINE = re.compile(
    r"accepted=(\d+) completed=(\d+) lost=(\d+) duplicate_tickets=(\d+) duplicate_emails=(\d+)"
)


def test_chaos_loses_nothing_and_sends_nothing_twice(rabbitmq_url: str) -> None:
    require_servers_ctl()
    result = subprocess.run(
        [sys.executable, "scripts/chaos.py", "--count", "150", "--rate", "5", "--settle", "240"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    print(result.stdout)
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    match = LAST_LINE.fullmatch(last)
    assert match, result.stdout[-3000:] + result.stderr[-3000:]
    accepted, completed, lost, duplicate_tickets, duplicate_emails = map(int, match.groups())
    # Clients resend with the same Idempotency-Key, so every incident is accepted in the end.
    assert accepted == 150
    # Exactly one email each, the notifier's kill included: a mail the SMTP server had when
    # the kill landed is recorded from the send journal, not sent again.
    assert (completed, lost, duplicate_tickets, duplicate_emails) == (150, 0, 0, 0)
    # One incident in four came by SMS (n = 0, 4, …, 148): one text each, journaled as well.
    texts = TEXTS.search(result.stdout)
    assert texts, result.stdout[-3000:]
    assert tuple(map(int, texts.groups())) == (38, 0)
    # One incident, ticket and mail per request, and the exit status says so too.
    assert "requests=150 incidents=150 tickets=150 mails=150 texts=38 totals match" in (
        result.stdout
    )
    assert result.returncode == 0
