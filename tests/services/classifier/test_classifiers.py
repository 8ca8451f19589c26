"""Local model on the shipped data; Gemini through the real google-genai client on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from google.genai import errors as genai_errors

from incidentflow.embeddings import SentenceEncoder
from services.classifier.adapters.gemini import GeminiClassifier
from services.classifier.adapters.local import (
    FAST_PATH_CONFIDENCE,
    SHIPPED_DATA,
    Example,
    LinearScorer,
    LocalClassifier,
    is_held_out,
    read_examples,
    split,
)
from services.classifier.classify import Classification, FallbackClassifier
from services.classifier.evaluation import evaluate
from tests.fakes import Answer, fake_server


@pytest.fixture(scope="module")
def local() -> LocalClassifier:
    train, _ = split(read_examples(SHIPPED_DATA))
    return LocalClassifier.train(train)


def test_held_out_split_is_disjoint_and_stable() -> None:
    examples = read_examples(SHIPPED_DATA)
    train, held_out = split(examples)
    assert len(held_out) >= 0.15 * len(examples)
    assert not {e.text for e in train} & {e.text for e in held_out}
    assert all(is_held_out(e.text) for e in held_out)


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I am FURIOUS! I was charged TWICE! This is absolutely ridiculous!", "duplicate_payment"),
        ("I noticed duplicate charges. Please investigate.", "duplicate_payment"),
        ("someone used my card in another country, I never made these purchases", "fraud_report"),
        ("I can't log in, my account is locked and nobody helps", "account_locked"),
    ],
)
async def test_local_model_classifies_clear_messages(
    local: LocalClassifier, text: str, category: str
) -> None:
    result = await local.classify(text)
    assert result.category == category
    assert 0 < result.confidence <= 1
    assert result.reason and result.model == "local"


MULTILINGUAL = Path(__file__).resolve().parents[3] / "data/classifier/multilingual-heldout.csv"


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Me han cobrado dos veces la misma compra y nadie me responde", "duplicate_payment"),
        (
            "Meine Karte wurde gesperrt und ich komme nicht mehr ins Online-Banking",
            "account_locked",
        ),
        ("Quelqu'un a utilisé ma carte pour des achats que je n'ai pas faits", "fraud_report"),
        ("Voglio il rimborso per l'ordine annullato la settimana scorsa", "refund_request"),
        ("O Pix não foi concluído mas o dinheiro saiu da minha conta", "failed_payment"),
    ],
)
def test_local_model_classifies_other_languages(
    local: LocalClassifier, text: str, category: str
) -> None:
    assert local.predict(text).category == category


class CountingEncoder:
    """The real encoder, counting the calls and the texts it was given."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self.calls: list[list[str]] = []
        self.name = encoder.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.encoder.encode(texts)


def test_a_batch_embeds_its_unsure_messages_in_one_call(local: LocalClassifier) -> None:
    assert local.encoder is not None
    counting = CountingEncoder(local.encoder)
    model = LocalClassifier(local.words, local.meaning, encoder=counting)  # type: ignore[arg-type]
    texts = [e.text for e in read_examples(SHIPPED_DATA)[:60]]
    sure = [
        text
        for text in texts
        if LinearScorer(local.words).score(text)[0].max() >= FAST_PATH_CONFIDENCE
    ]
    results = model.predict_many(texts)
    assert len(counting.calls) == 1
    assert sorted(counting.calls[0]) == sorted(set(texts) - set(sure))
    assert 0 < len(sure) < len(texts)  # both paths were taken
    assert results == [local.predict(text) for text in texts]


def test_quality_on_held_out_rows_and_per_language(local: LocalClassifier) -> None:
    _, held_out = split(read_examples(SHIPPED_DATA))
    assert evaluate(local, held_out).macro_f1 >= 0.95
    multilingual = evaluate(local, read_examples(MULTILINGUAL))
    assert set(multilingual.by_language) == {"es", "de", "fr", "pt", "it"}
    for language, (rows, accuracy) in multilingual.by_language.items():
        assert rows >= 60 and accuracy >= 0.85, language


def test_local_model_round_trips_through_its_directory(local: LocalClassifier, tmp_path) -> None:  # type: ignore[no-untyped-def]
    local.save(tmp_path, trained_on=1)
    loaded = LocalClassifier.load(tmp_path)
    text = "my payment failed but the money left my account"
    assert loaded.predict(text) == local.predict(text)


def gemini_answer(category: str, confidence: float = 0.93, reason: str = "charged twice") -> dict:  # type: ignore[type-arg]
    text = json.dumps({"category": category, "confidence": confidence, "reason": reason})
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]}


def gemini(url: str, timeout: float = 5.0) -> GeminiClassifier:
    return GeminiClassifier("test-key", "gemini-2.0-flash", base_url=url, timeout_seconds=timeout)


async def test_gemini_structured_answer_is_used() -> None:
    with fake_server(Answer(200, gemini_answer("fraud_report"))) as server:
        result = await gemini(server.url).classify("who bought this with my card?")
    assert (result.category, result.confidence, result.model) == (
        "fraud_report",
        0.93,
        "gemini:gemini-2.0-flash",
    )
    request = server.received[0]
    assert request.path.endswith("/models/gemini-2.0-flash:generateContent")
    assert request.headers["x-goog-api-key"] == "test-key"
    config = request.json()["generationConfig"]
    assert config["temperature"] == 0
    assert config["responseMimeType"] == "application/json"
    assert "duplicate_payment" in json.dumps(config["responseSchema"])


async def test_gemini_429_is_retried() -> None:
    with fake_server(
        Answer(429, {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}),
        Answer(200, gemini_answer("refund_request")),
    ) as server:
        result = await gemini(server.url).classify("I want my money back")
    assert result.category == "refund_request" and len(server.received) == 2


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            Answer(200, {"candidates": [{"content": {"parts": [{"text": "{not json"}]}}]}),
            id="malformed JSON",
        ),
        pytest.param(Answer(200, gemini_answer("made_up_category")), id="category not in enum"),
        pytest.param(Answer(500, {"error": {"code": 500, "message": "boom"}}), id="server error"),
        pytest.param(Answer(200, gemini_answer("other"), delay=3), id="timeout"),
    ],
)
async def test_gemini_failure_falls_back_to_local_and_says_so(
    local: LocalClassifier, answer: Answer
) -> None:
    with fake_server(answer, default=answer) as server:
        classifier = FallbackClassifier(gemini(server.url, timeout=1.0), local)
        result = await classifier.classify("I was charged twice for one coffee")
    assert result.model == "local"
    assert result.category == "duplicate_payment"


async def test_a_batch_falls_back_only_where_gemini_failed(local: LocalClassifier) -> None:
    # One answer outside the enum: that message alone is the local model's.
    answers = [Answer(200, gemini_answer("refund_request")), Answer(200, gemini_answer("nope"))]
    with fake_server(*answers, default=Answer(200, gemini_answer("refund_request"))) as server:
        classifier = FallbackClassifier(gemini(server.url, timeout=2.0), local)
        results = await classifier.classify_many(
            ["I want my money back", "I was charged twice for one coffee", "refund please"]
        )
    assert all(isinstance(r, Classification) for r in results)
    models = [r.model for r in results]
    assert models.count("local") == 1 and models.count("gemini:gemini-2.0-flash") == 2


def test_fast_scorer_equals_the_sklearn_pipeline(local: LocalClassifier) -> None:
    """The words model's own arithmetic (LinearScorer) gives scikit-learn's probabilities."""
    edge_cases = [
        Example("", "other"),
        Example("zzzz qqqq", "other"),
        Example("CHARGED TWICE!!! 😡", "duplicate_payment"),
    ]
    examples = [*read_examples(SHIPPED_DATA)[:200], *edge_cases]
    texts = [e.text for e in examples]
    expected = local.words.predict_proba(texts)
    scorer = LinearScorer(local.words)
    for text, probabilities in zip(texts, expected, strict=True):
        computed, _ = scorer.score(text)
        assert computed == pytest.approx(probabilities, abs=1e-9)


async def test_gemini_calls_in_flight_are_bounded() -> None:
    answer = Answer(200, gemini_answer("other"), delay=0.3)
    with fake_server(default=answer) as server:
        classifier = GeminiClassifier(
            "k", "gemini-2.0-flash", base_url=server.url, timeout_seconds=5, max_concurrency=2
        )
        results = await asyncio.gather(*(classifier.classify(f"q{i}") for i in range(8)))
    assert len(results) == 8 and len(server.received) == 8
    assert server.max_in_flight == 2


async def test_gemini_still_overloaded_after_retries_halves_the_calls_in_flight() -> None:
    quota = Answer(
        429, {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    )
    with fake_server(quota, quota, quota, default=Answer(200, gemini_answer("other"))) as server:
        classifier = GeminiClassifier(
            "k", "gemini-2.0-flash", base_url=server.url, timeout_seconds=5, max_concurrency=64
        )
        with pytest.raises(genai_errors.ClientError):
            await classifier.classify("first")
        assert classifier.in_flight.limit == 4  # from 8
        assert (await classifier.classify("second")).category == "other"
