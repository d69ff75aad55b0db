"""Make small real PDFs with a text layer (matplotlib's PDF backend) for tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure


def make_text_pdf(path: Path, pages: list[str], title: str = "") -> Path:
    """One PDF page per string, text wrapped at 90 columns, with a real text layer."""
    with PdfPages(path, metadata={"Title": title} if title else None) as pdf:
        for text in pages:
            fig = Figure(figsize=(8.5, 11))
            lines = [w for para in text.split("\n") for w in (textwrap.wrap(para, 90) or [""])]
            for i, line in enumerate(lines[:60]):
                fig.text(0.06, 0.95 - i * 0.015, line, fontsize=9, family="DejaVu Sans")
            pdf.savefig(fig)
    return path
