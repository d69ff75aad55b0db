"""HTTP routes of the chat app beside Gradio's: the library's PDFs and their pages.

    GET paperchat/pdf?paper=ID                      the library's copy of the PDF (inline)
    GET paperchat/page?paper=ID&n=N&scale=S         page N rendered as JPEG (cached)
    GET paperchat/highlight?chunk=C&len=L&strong=a-b,c-d
                                                    boxes of a passage on its pages (JSON)

A request names a paper id or a chunk id, never a path: the file is the one the library
records for that paper, and only a file inside the library's PDF store is ever opened
(:class:`index.pdfstore.PdfStore`). Anything else is a 404. When the chat has a password
(``ui.auth``) these routes want the same login as the page (401 without it).

The routes are handed to Gradio's FastAPI app when it is created (``app_kwargs``), so they
come before Gradio's own.
"""

from __future__ import annotations

import logging
import re
from html import escape
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute

from core.errors import PaperchatError
from core.links import APP_ROUTES
from ingest.pageview import PageView

log = logging.getLogger(__name__)
SPAN = re.compile(r"(\d{1,6})-(\d{1,6})")
MAX_SPANS = 16
IMAGE_CACHE = "private, max-age=300"


def signed_in(request: Request) -> bool:
    """Is the browser logged in to the Gradio app (always, when it has no password)? The
    same check as Gradio's own routes: its session cookie names a token it issued."""
    app: Any = request.app
    if getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None:
        return True
    cookie_id = getattr(app, "cookie_id", "")
    token = (request.cookies.get(f"access-token-{cookie_id}")
             or request.cookies.get(f"access-token-unsecure-{cookie_id}"))
    return bool(token) and getattr(app, "tokens", {}).get(token) is not None


def _guard(request: Request) -> None:
    if not signed_in(request):
        raise HTTPException(status_code=401, detail="Not authenticated")


def parse_spans(text: str) -> tuple[tuple[int, int], ...]:
    """"12-80,95-140" -> ((12, 80), (95, 140)); malformed or empty spans are dropped."""
    spans = []
    for part in (text or "").split(",")[:MAX_SPANS]:
        m = SPAN.fullmatch(part.strip())
        if m and int(m.group(1)) < int(m.group(2)):
            spans.append((int(m.group(1)), int(m.group(2))))
    return tuple(spans)


def _missing_page(err: PaperchatError) -> HTMLResponse:
    """What a browser shows for a PDF the library cannot serve."""
    return HTMLResponse(f"<!doctype html><title>Not found</title><p>{escape(str(err))}</p>",
                        status_code=404)


def page_routes(view: PageView) -> list[BaseRoute]:
    """The routes over ``view`` (give them to Gradio as ``app_kwargs={"routes": ...}``)."""
    router = APIRouter()

    @router.get(f"/{APP_ROUTES}/pdf")
    def pdf(request: Request, paper: str = "") -> Response:
        _guard(request)
        try:
            found = view.paper(paper)
            path = view.pdf_path(found)
        except PaperchatError as err:
            return _missing_page(err)
        name = re.sub(r"[^\w.-]+", "_", found.id, flags=re.ASCII) + ".pdf"
        return FileResponse(path, media_type="application/pdf", filename=name,
                            content_disposition_type="inline")

    @router.get(f"/{APP_ROUTES}/page")
    def page(request: Request, paper: str = "", n: int = 1, scale: float = 2.0) -> Response:
        _guard(request)
        try:
            image = view.page_image(paper, n, scale)
        except PaperchatError as err:
            return JSONResponse({"detail": str(err)}, status_code=404)
        return FileResponse(image, media_type="image/jpeg",
                            headers={"Cache-Control": IMAGE_CACHE})

    @router.get(f"/{APP_ROUTES}/highlight")
    def highlight(request: Request, chunk: int,
                  length: int | None = Query(None, alias="len"),
                  strong: str = "") -> Response:
        _guard(request)
        try:
            found = view.highlight(chunk, length, parse_spans(strong))
        except PaperchatError as err:
            return JSONResponse({"detail": str(err)}, status_code=404)
        return JSONResponse(found.to_dict())

    return list(router.routes)
