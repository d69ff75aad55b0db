"""Make small real PDFs with a text layer (matplotlib's PDF backend) for tests."""

from __future__ import annotations

import textwrap
import zlib
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


# ------------------------------------------------------- hand-built PDFs (raw syntax)


def text_stream(lines: list[str], *, size: float = 10, y: float = 740, state: str = "") -> bytes:
    """A content stream drawing ``lines`` in Helvetica from (72, y) down, inside q/Q;
    ``state`` is put before the text (e.g. "3 Tr" invisible, "1 1 1 rg" white)."""
    body = [f"q BT {state} /F1 {size:g} Tf 14 TL 72 {y:g} Td"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        body.append(f"({escaped}) Tj T*")
    body.append("ET Q")
    return "\n".join(body).encode("latin-1")


class RawPdf:
    """A PDF written object by object: pages with content streams and Helvetica, and Form
    XObjects, for PDFs no drawing library makes (hidden text, bombs)."""

    def __init__(self) -> None:
        self.objects: list[bytes] = []
        self.font = self.add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")

    def add(self, body: bytes) -> int:
        self.objects.append(body)
        return len(self.objects)

    def stream(self, data: bytes, extra: bytes = b"") -> int:
        packed = zlib.compress(data, 9)
        return self.add(b"<< /Length %d /Filter /FlateDecode%s >>\nstream\n%s\nendstream"
                        % (len(packed), extra, packed))

    def form(self, content: bytes, xobjects: dict[str, int] | None = None) -> int:
        names = b" ".join(b"/%s %d 0 R" % (k.encode(), v) for k, v in (xobjects or {}).items())
        return self.stream(content, b" /Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                           b"/Resources << /Font << /F1 %d 0 R >> /XObject << %s >> >>"
                           % (self.font, names))

    def write(self, path: Path, contents: list[bytes], xobjects: dict[str, int] | None = None,
              repeat_first_page: int = 0) -> Path:
        """One page per content stream (or the first page listed ``repeat_first_page``
        times: a huge page count in a small file)."""
        names = b" ".join(b"/%s %d 0 R" % (k.encode(), v) for k, v in (xobjects or {}).items())
        pages_id = len(self.objects) + 2 * len(contents) + 1
        kids = []
        for content in contents:
            stream = self.stream(content)
            kids.append(self.add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font "
                b"<< /F1 %d 0 R >> /XObject << %s >> >> /Contents %d 0 R >>"
                % (pages_id, self.font, names, stream)))
        refs = [kids[0]] * repeat_first_page if repeat_first_page else kids
        kid_list = b" ".join(b"%d 0 R" % k for k in refs)
        assert self.add(b"<< /Type /Pages /Kids [%s] /Count %d >>"
                        % (kid_list, len(refs))) == pages_id
        catalog = self.add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
        out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(self.objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(self.objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
        out += (b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                % (len(self.objects) + 1, catalog, xref))
        path.write_bytes(bytes(out))
        return path


def form_bomb_pdf(path: Path, text: list[str], depth: int = 18) -> Path:
    """A readable page that also draws a Form XObject nested ``depth`` deep, each level
    drawing the next twice: 2**depth draws from a file of a few KB (pdfium takes ~15 s and
    ~0.9 GB at depth 18 on a free core, 4x per extra 2 levels)."""
    pdf = RawPdf()
    form = pdf.form(b"BT /F1 1 Tf 0 0 Td (a) Tj ET")
    for _ in range(depth):
        form = pdf.form(b"/X Do /X Do", {"X": form})
    return pdf.write(path, [text_stream(text) + b"\n/X Do"], {"X": form})


def many_pages_pdf(path: Path, text: list[str], pages: int) -> Path:
    """A PDF of ``pages`` pages, all the same page object: a huge page count in a small file."""
    return RawPdf().write(path, [text_stream(text)], repeat_first_page=pages)
