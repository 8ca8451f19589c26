"""The classifier service: ``uvicorn services.classifier.app:app``."""

from faststream.asgi import AsgiFastStream

from incidentflow.service import ServiceRuntime
from services.classifier.adapters.gemini import GeminiClassifier
from services.classifier.adapters.local import LocalClassifier
from services.classifier.classify import Classifier, FallbackClassifier
from services.classifier.handlers import register
from services.classifier.settings import ClassifierSettings


def build_classifier(settings: ClassifierSettings) -> Classifier:
    local = LocalClassifier.default(settings.model_dir, settings.training_data)
    if settings.gemini_api_key is None:
        return local
    gemini = GeminiClassifier(
        settings.gemini_api_key.get_secret_value(),
        settings.gemini_model,
        base_url=settings.gemini_base_url,
        timeout_seconds=settings.gemini_timeout_seconds,
        max_concurrency=settings.gemini_max_concurrency,
    )
    return FallbackClassifier(gemini, local)


def build_runtime(settings: ClassifierSettings) -> ServiceRuntime:
    """The service with its handlers registered, not started."""
    runtime = ServiceRuntime("classifier", settings)
    register(runtime, build_classifier(settings), settings.review_threshold)
    return runtime


def create_app(settings: ClassifierSettings | None = None) -> AsgiFastStream:
    return build_runtime(settings or ClassifierSettings()).asgi_app()


app = create_app()
