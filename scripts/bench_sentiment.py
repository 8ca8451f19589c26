"""Benchmark of the sentiment scorer: messages/s on one core, domain layer (plain VADER beside).

Single process, pinned to one CPU; the labeled texts repeated to at least 20,000 messages, one
``score()`` call per message, timed with ``time.perf_counter``.

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

from services.sentiment.evaluate import SHIPPED_LABELED, read_labeled  # noqa: E402
from services.sentiment.lexicon import ensure_vader_lexicon  # noqa: E402
from services.sentiment.score import SentimentScorer  # noqa: E402
from services.sentiment.settings import SentimentSettings  # noqa: E402


def messages_per_second(scorer: SentimentScorer, stream: list[str]) -> float:
    for text in stream[:500]:  # warm-up
        scorer.score(text)
    started = time.perf_counter()
    for text in stream:
        scorer.score(text)
    return len(stream) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()

    settings = SentimentSettings()
    ensure_vader_lexicon(settings.nltk_data)
    texts = [message.text for message in read_labeled(SHIPPED_LABELED)]
    stream = texts * -(-args.messages // len(texts))  # whole repeats, at least --messages
    plain = messages_per_second(SentimentScorer(settings.thresholds, domain=False), stream)
    domain = messages_per_second(SentimentScorer(settings.thresholds), stream)

    print(f"machine: {os.cpu_count()} cores, pinned to 1; python {sys.version.split()[0]}")
    print(f"plain VADER:  {plain:,.0f} msgs/s on one core ({len(stream)} messages)")
    print(f"domain layer: {domain:,.0f} msgs/s on one core ({len(stream)} messages)")
    print(f"sentiment_msgs_per_s={domain:.0f}")


if __name__ == "__main__":
    main()
