"""The API's own docs pages (/docs, /redoc), their scripts and styles served from here.

FastAPI's pages load Swagger UI and ReDoc from a CDN: on a network without internet (most
banks' production networks) they render blank. The assets come inside the `fastapi-offline`
wheel (swagger-ui-dist 5, redoc 2); only its files are used, served under /docs/assets.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
# No favicon request at all: a data URL, so nothing is fetched from anywhere.
NO_FAVICON = "data:,"


def serve_docs(app: FastAPI, openapi_url: str) -> None:
    """/docs (Swagger UI) and /redoc for ``app``'s OpenAPI document at ``openapi_url``."""
    app.mount(
        ASSETS_URL,
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        name="docs-assets",
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=NO_FAVICON,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=NO_FAVICON,
            with_google_fonts=False,
        )
