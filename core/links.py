"""Link policy, in one place: where a paper's abstract and PDF page live on the web.

arXiv papers link to ``<host>/abs/<id>`` and ``<arxiv_pdf_url>/<id>#page=N`` on the host of
the configured PDF base (``ingest.arxiv_pdf_url``), so a mirror serves both; a paper with its
own PDF URL links there; a local PDF has no web link.

Every paper, arXiv or not, also has the library's own copy, served by the chat app itself
(offline, uploads included): :func:`app_pdf_url` and :func:`app_page_image_url` build those
links, relative to the chat's page (so they work under a path prefix too). They name a paper
by its id, never by a file path.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

APP_ROUTES = "paperchat"  # the chat app's own routes: paperchat/pdf, paperchat/page, ...

ARXIV_PDF = "https://arxiv.org/pdf"  # the default of ingest.arxiv_pdf_url


def arxiv_abs_url(arxiv_id: str, arxiv_pdf_url: str = ARXIV_PDF) -> str:
    """The abstract page on the host of the configured PDF base (``<host>/pdf`` gives
    ``<host>/abs``); arxiv.org when the base has another form."""
    base = arxiv_pdf_url.rstrip("/")
    root = base.removesuffix("/pdf") if base.endswith("/pdf") else "https://arxiv.org"
    return f"{root}/abs/{arxiv_id}"


def pdf_page_url(arxiv_id: str | None, own_pdf_url: str | None, page: int,
                 arxiv_pdf_url: str = ARXIV_PDF) -> str | None:
    """The PDF at ``page`` (``#page=N``): ``<arxiv_pdf_url>/<id>`` for arXiv papers, else the
    paper's own PDF URL; None for a local PDF with neither."""
    if arxiv_id:
        base = f"{arxiv_pdf_url.rstrip('/')}/{arxiv_id}"
    elif own_pdf_url:
        base = own_pdf_url.split("#", 1)[0]
    else:
        return None
    return f"{base}#page={page}"


def app_pdf_url(paper_id: str, page: int | None = None) -> str:
    """The library's copy of the paper's PDF, served by the chat app (``#page=N``)."""
    url = f"{APP_ROUTES}/pdf?paper={quote(paper_id, safe='')}"
    return f"{url}#page={page}" if page else url


def app_page_image_url(paper_id: str, page: int, scale: float = 2.0) -> str:
    """Page ``page`` of the paper rendered as an image by the chat app."""
    return f"{APP_ROUTES}/page?" + urlencode({"paper": paper_id, "n": page, "scale": f"{scale:g}"})
