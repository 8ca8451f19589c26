"""Benchmark of the local classifier: model load time, messages/s on one core, process RSS.

Usage: make bench-classifier   (or: python scripts/bench_classifier.py [--messages N])
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One core, one BLAS thread: the figure is per core, not per machine.
os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.classifier.adapters.local import (  # noqa: E402
    SHIPPED_DATA,
    LocalClassifier,
    read_examples,
    split,
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def service_rss_mb(model_dir: Path) -> float:
    """RSS of the real classifier service process once it has loaded its model."""
    code = (
        "import os, time;"
        "from services.classifier.app import create_app;"
        "from services.classifier.settings import ClassifierSettings;"
        f"app = create_app(ClassifierSettings(model_dir={str(model_dir)!r}));"
        "print('loaded', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "loaded"
        time.sleep(0.5)
        return rss_mb(process.pid)
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()

    examples = read_examples(SHIPPED_DATA)
    train, _ = split(examples)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        LocalClassifier.train(train).save(model_dir, trained_on=len(train))

        started = time.perf_counter()
        model = LocalClassifier.load(model_dir)
        load_s = time.perf_counter() - started

        texts = [e.text for e in examples]
        stream = (texts * (args.messages // len(texts) + 1))[: args.messages]
        model.predict(stream[0])  # warm-up
        started = time.perf_counter()
        for text in stream:
            model.predict(text)
        single = len(stream) / (time.perf_counter() - started)

        rss = service_rss_mb(model_dir)

    print(f"machine: {os.cpu_count()} cores, pinned to 1; python {sys.version.split()[0]}")
    print(f"model load: {load_s:.3f} s")
    print(f"one message per call: {single:,.0f} msgs/s on one core ({len(stream)} messages)")
    print(f"classifier service process RSS after loading the model: {rss:.0f} MB")
    print(f"classifier_msgs_per_s={single:.0f} load_s={load_s:.3f} rss_mb={rss:.0f}")


if __name__ == "__main__":
    main()
