"""Benchmark of the sentiment scorer: messages/s on one core, as the service runs it (plain VADER
beside).

Single process, pinned to one CPU; the labeled texts (every style and language) repeated to at
least 20,000 messages, scored in batches of 20 (one ``score_many()`` call each), timed with
``time.perf_counter``. The service's scorer detects each message's language and sends what VADER
cannot settle (other languages, English it finds positive or neutral) to the embedding reader.

Usage: make bench-sentiment   (or: python scripts/bench_sentiment.py [--messages N])
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.sentiment.assemble import build_scorer  # noqa: E402
from services.sentiment.evaluate import SHIPPED_LABELED, read_labeled  # noqa: E402
from services.sentiment.score import SentimentScorer  # noqa: E402
from services.sentiment.settings import SentimentSettings  # noqa: E402

BATCH = 20


def messages_per_second(scorer: SentimentScorer, stream: list[str]) -> float:
    scorer.score_many(stream[:500])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(stream), BATCH):
        scorer.score_many(stream[start : start + BATCH])
    return len(stream) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()

    settings = SentimentSettings()
    service = build_scorer(settings)
    texts = [message.text for message in read_labeled(SHIPPED_LABELED)]
    stream = texts * -(-args.messages // len(texts))  # whole repeats, at least --messages
    plain = messages_per_second(SentimentScorer(settings.thresholds, domain=False), stream)
    domain = messages_per_second(service, stream)

    print(f"machine: {os.cpu_count()} cores, pinned to 1; python {sys.version.split()[0]}")
    print(f"plain VADER:  {plain:,.0f} msgs/s on one core ({len(stream)} messages)")
    print(f"the service's scorer: {domain:,.0f} msgs/s on one core ({len(stream)} messages)")
    print(f"sentiment_msgs_per_s={domain:.0f}")


if __name__ == "__main__":
    main()
