"""`incidentflow train`, `eval` and `classify`, run as an operator would."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from services.classifier.adapters.local import SHIPPED_DATA, read_examples, split

CLI = [sys.executable, "-m", "incidentflow_tools.cli"]


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return result.stdout


def test_train_then_eval_on_the_held_out_split(tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert "trained on" in run("train", "--out", str(model))
    output = run("eval", str(SHIPPED_DATA), "--held-out", "--model", str(model))
    last = output.strip().splitlines()[-1]
    accuracy, macro_f1 = (float(part.split("=")[1]) for part in last.split())
    assert last.startswith("accuracy=0.") and " macro_f1=0." in last
    assert macro_f1 >= 0.90 and accuracy >= 0.90
    assert "confusion matrix" in output and "duplicate_payment" in output
    assert "confidence>=0.9:" in output


def test_operators_train_on_their_own_csv(tmp_path: Path) -> None:
    # A tiny operator data set that maps every message about "widgets" to `other`.
    rows = [(e.text, e.category) for e in split(read_examples(SHIPPED_DATA))[0][:300]]
    rows += [(f"question number {i} about widgets", "other") for i in range(40)]
    labeled = tmp_path / "mine.csv"
    with labeled.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        writer.writerows(rows)
    run("train", str(labeled), "--out", str(tmp_path / "m"))
    line = run("classify", "--model", str(tmp_path / "m"), stdin="more about widgets please\n")
    assert json.loads(line)["category"] == "other"


def test_classify_reads_lines_and_writes_json_lines() -> None:
    output = run(
        "classify", stdin="I was charged twice for one order\n\nmy account is locked\n"
    ).splitlines()
    results = [json.loads(line) for line in output]
    assert [r["category"] for r in results] == ["duplicate_payment", "account_locked"]
    assert all({"confidence", "reason", "model", "text"} <= r.keys() for r in results)


def test_eval_rejects_an_unknown_category(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,category\nhello,greeting\n")
    result = subprocess.run(
        [*CLI, "eval", str(bad)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode != 0 and "unknown category 'greeting'" in result.stderr
