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


def service_load(model_dir: Path) -> tuple[float, float]:
    """Seconds the real classifier service takes to build its model (the sentence encoder
    included), in a process of its own, and that process's RSS once it has."""
    code = (
        "import os, time;"
        "from services.classifier.app import build_classifier;"
        "from services.classifier.settings import ClassifierSettings;"
        f"settings = ClassifierSettings(model_dir={str(model_dir)!r});"
        "started = time.perf_counter(); build_classifier(settings);"
        "print(time.perf_counter() - started, flush=True);"
        "from services.classifier.app import create_app; app = create_app(settings);"
        "print('loaded', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        load_s = float(process.stdout.readline())
        assert process.stdout.readline().strip() == "loaded"
        time.sleep(0.5)
        return load_s, rss_mb(process.pid)
    finally:
        process.kill()
        process.wait()


# The batch sizes the service receives: one event alone when idle, up to a relay message's
# events under load (services/ingest/relay.py: EVENTS_PER_MESSAGE).
BATCH_SIZES = (1, 20, 100)
HEADLINE_BATCH = 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()

    examples = read_examples(SHIPPED_DATA)
    train, _ = split(examples)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        LocalClassifier.train(train).save(model_dir, trained_on=len(train))

        model = LocalClassifier.load(model_dir)

        # Every message of the shipped set (all styles and languages), in its shuffled order.
        texts = [e.text for e in examples]
        stream = (texts * (args.messages // len(texts) + 1))[: args.messages]
        rates = {}
        for size in BATCH_SIZES:
            started = time.perf_counter()
            for start in range(0, len(stream), size):
                model.predict_many(stream[start : start + size])
            rates[size] = len(stream) / (time.perf_counter() - started)

        load_s, rss = service_load(model_dir)

    print(f"machine: {os.cpu_count()} cores, pinned to 1; python {sys.version.split()[0]}")
    print(f"model load: {load_s:.3f} s")
    for size, rate in rates.items():
        print(f"batches of {size:>3}: {rate:,.0f} msgs/s on one core ({len(stream)} messages)")
    print(f"classifier service process RSS after loading the model: {rss:.0f} MB")
    print(
        f"classifier_msgs_per_s={rates[HEADLINE_BATCH]:.0f} "
        f"batch1_msgs_per_s={rates[1]:.0f} load_s={load_s:.3f} rss_mb={rss:.0f}"
    )


if __name__ == "__main__":
    main()
