"""deploy/prometheus/alerts.yaml is a valid Prometheus rule file over metrics that exist.

The PromQL is parsed by promql-parser (the Rust parser GreptimeDB uses, Prometheus syntax);
the metric names are those real service processes expose on /metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from incidentflow_tools.sandbox import own_vhost
from incidentflow_tools.stack import REPO_ROOT
from tests.conftest import RABBITMQ_URL, free_port
from tests.e2e.conftest import start_service

ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULES: list[dict[str, Any]] = [
    rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
]
# Light to start (no model to train) and between them every kind of route: plain and delayed.
SCRAPED = ("sentiment", "reminder")
# What each Prometheus metric type is exposed as.
EXPOSED_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "gauge": ("",),
    "info": ("_info",),
}
# Series Prometheus itself makes for every scrape target.
SCRAPE_SERIES = {"up"}
REQUIRED_ALERTS = {
    "DeadLettersWaiting",
    "StepLatencyHigh",
    "RemindersLate",
    "ConsumerStalled",
    "DeliveriesFailing",
    "NotificationsFailing",
}


def metric_names(expr: Any) -> set[str]:
    """Every metric an expression selects, from its syntax tree."""
    if isinstance(expr, promql_parser.VectorSelector):
        return {expr.name} if expr.name else set()
    if isinstance(expr, promql_parser.MatrixSelector):
        return metric_names(expr.vector_selector)
    if isinstance(expr, promql_parser.BinaryExpr):
        return metric_names(expr.lhs) | metric_names(expr.rhs)
    if isinstance(expr, promql_parser.Call):
        return set().union(*(metric_names(arg) for arg in expr.args))
    if isinstance(expr, promql_parser.AggregateExpr):
        return metric_names(expr.expr) | (metric_names(expr.param) if expr.param else set())
    if isinstance(
        expr, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
    ):
        return metric_names(expr.expr)
    assert isinstance(expr, promql_parser.NumberLiteral | promql_parser.StringLiteral), expr
    return set()


@pytest.fixture(scope="module")
def exposed(
    rabbitmq_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[set[str]]:
    """Names the running services expose, histograms as their _bucket/_sum/_count series."""
    logs = tmp_path_factory.mktemp("alerts")
    base = RABBITMQ_URL if "incidentflow-test" in rabbitmq_url else rabbitmq_url
    with own_vhost(base) as broker_url:
        env = {"RABBITMQ_URL": broker_url, "DATABASE_URL": database_url}
        ports = {name: free_port() for name in SCRAPED}
        processes = []
        try:
            for name, port in ports.items():
                processes.append(start_service(name, port, env, logs / f"{name}.log"))
            names: set[str] = set()
            for port in ports.values():
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                for family in text_string_to_metric_families(text):
                    names.update(family.name + s for s in EXPOSED_SUFFIXES[family.type])
            yield names
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)


def test_the_file_is_a_prometheus_rule_file() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    groups = document["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    for group in groups:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"]
    for rule in RULES:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
        promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= set(rule["annotations"])
    assert {r["alert"] for r in RULES} >= REQUIRED_ALERTS
    assert len({r["alert"] for r in RULES}) == len(RULES)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["alert"])
def test_every_expression_parses_and_uses_metrics_the_services_expose(
    rule: dict[str, Any], exposed: set[str]
) -> None:
    used = metric_names(promql_parser.parse(rule["expr"]))
    assert used
    assert sorted(used - exposed - SCRAPE_SERIES) == []


def test_metric_names_come_from_the_running_services(exposed: set[str]) -> None:
    # The scrape itself is real: FastStream's and our own metrics are both there.
    assert "faststream_received_messages_total" in exposed
    assert "incidentflow_dead_letter_messages" in exposed
    assert "incidentflow_step_duration_seconds_bucket" in exposed


def test_an_unknown_metric_is_caught() -> None:
    # Guards the checker itself: a typo in an expression must not pass as "no metrics".
    assert metric_names(promql_parser.parse("rate(incidentflow_no_such_total[5m]) > 0")) == {
        "incidentflow_no_such_total"
    }
