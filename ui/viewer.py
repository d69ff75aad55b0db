"""The page viewer beside the chat, and the export buttons' script.

Clicking a citation [n] in an answer, or its source card, opens the cited page: the script
asks ``paperchat/highlight`` (``ui.routes``) for the passage's boxes, shows the page image
from ``paperchat/page`` and lays the boxes over it (the sentence the answer rests on in a
stronger colour). Previous/next page, zoom, "Open PDF" (the library's copy at that page) and
close work in the page alone: no Gradio event, so a busy chat queue never delays them.
"""

from __future__ import annotations

VIEWER_HTML = "<div id='pc-viewer' class='pc-viewer' hidden></div>"

VIEWER_CSS = """
#viewer { padding: 0; }
#side-column:has(#pc-viewer:not([hidden])) { flex-grow: 4 !important; }
.pc-viewer { border: 1px solid var(--border-color-primary); border-radius: 6px; margin-bottom: 8px;
  background: var(--background-fill-secondary); }
.pc-viewer-bar { display: flex; flex-wrap: wrap; gap: 4px 8px; align-items: center;
  padding: 4px 8px; border-bottom: 1px solid var(--border-color-primary); font-size: 0.85em; }
.pc-viewer-title { flex: 1 1 12em; font-weight: 600; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.pc-viewer-tools { display: flex; gap: 4px; align-items: center; }
.pc-viewer-tools button { border: 1px solid var(--border-color-primary); border-radius: 4px;
  padding: 0 7px; min-width: 1.8em; background: var(--background-fill-primary); cursor: pointer; }
.pc-viewer-tools button:disabled { opacity: 0.4; cursor: default; }
.pc-viewer-scroll { max-height: 72vh; overflow: auto; padding: 6px; }
.pc-viewer-msg { padding: 10px 12px; }
.pc-viewer-note { padding: 2px 8px; font-size: 0.8em; color: var(--body-text-color-subdued); }
.pc-page { position: relative; margin: 0 auto; background: #fff;
  box-shadow: 0 1px 4px rgba(0, 0, 0, 0.25); }
.pc-page-img { display: block; width: 100%; height: auto; }
.pc-hl { position: absolute; background: rgba(250, 204, 21, 0.35); border-radius: 2px;
  mix-blend-mode: multiply; pointer-events: none; }
.pc-hl-strong { background: rgba(249, 115, 22, 0.45); outline: 1px solid rgba(234, 88, 12, 0.7); }
.pc-card .pc-passage { cursor: zoom-in; }
"""

# Plain ES2017 in a <script> of the page head (Gradio's `head`); ids are what tests select.
VIEWER_JS = r"""
<script>
(() => {
  const PC = window.paperchatViewer = {data: null, page: 1, zoom: 1, n: ''};
  const ZOOMS = [0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3];
  const esc = (s) => String(s).replace(/[&<>"']/g,
    (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
  const root = () => document.getElementById('pc-viewer');
  const pct = (v) => (v * 100).toFixed(3) + '%';
  const rect = (b, cls) => `<div class="${cls}" style="left:${pct(b[0])};top:${pct(b[1])};` +
    `width:${pct(b[2] - b[0])};height:${pct(b[3] - b[1])}"></div>`;
  const imageUrl = (paper, n) => `paperchat/page?paper=${encodeURIComponent(paper)}` +
    `&n=${n}&scale=${PC.zoom >= 1.75 ? 3 : 2}`;
  const CLOSE = "<button id='pc-close' title='Close the page'>✕</button>";

  function message(text, isError) {
    const v = root();
    v.hidden = false;
    v.dataset.state = isError ? 'error' : 'loading';
    v.innerHTML = `<div class="pc-viewer-bar"><span class="pc-viewer-title"></span>` +
      `<span class="pc-viewer-tools">${CLOSE}</span></div>` +
      `<div class="pc-viewer-msg${isError ? ' pc-error' : ''}">${esc(text)}</div>`;
  }

  async function open(card) {
    if (!root() || !card || !card.dataset.chunk) return;
    const q = new URLSearchParams({chunk: card.dataset.chunk});
    if (card.dataset.len) q.set('len', card.dataset.len);
    if (card.dataset.strong) q.set('strong', card.dataset.strong);
    message('Loading the page…', false);
    const preload = new Image();  // the cited page, fetched while its boxes are worked out
    preload.src = imageUrl(card.dataset.paper || '', Number(card.dataset.page || 1));
    try {
      const res = await fetch('paperchat/highlight?' + q, {credentials: 'same-origin'});
      const data = await res.json();
      if (!res.ok) throw new Error(data.detail || ('HTTP ' + res.status));
      Object.assign(PC, {data: data, page: data.first, n: card.dataset.n || '', card: card.id});
      draw(true);
    } catch (err) {
      message('This page cannot be shown: ' + err.message, true);
    }
  }

  function draw(toMark) {
    const v = root(), d = PC.data, p = PC.page;
    if (!v || !d) return;
    const boxes = d.boxes[p] || [], strong = d.strong[p] || [];
    const paper = encodeURIComponent(d.paper);
    const img = imageUrl(d.paper, p);
    const note = d.complete ? '' : '<div class="pc-viewer-note">Part of the passage could ' +
      'not be matched to the page; the highlight shows the rest.</div>';
    v.hidden = false;
    v.dataset.state = 'page';
    v.dataset.paper = d.paper;
    v.dataset.page = p;
    v.innerHTML = `<div class="pc-viewer-bar">` +
      `<span class="pc-viewer-title" title="${esc(d.title)}">` +
      `[${esc(PC.n)}] ${esc(d.title)}</span>` +
      `<span class="pc-viewer-tools">` +
      `<button id="pc-prev" title="Previous page" ${p <= 1 ? 'disabled' : ''}>‹</button>` +
      `<span id="pc-page-label">Page ${p} of ${d.pages}</span>` +
      `<button id="pc-next" title="Next page" ${p >= d.pages ? 'disabled' : ''}>›</button>` +
      `<button id="pc-zoom-out" title="Zoom out">−</button>` +
      `<span id="pc-zoom-label">${Math.round(PC.zoom * 100)}%</span>` +
      `<button id="pc-zoom-in" title="Zoom in">+</button>` +
      `<a id="pc-open-pdf" href="paperchat/pdf?paper=${paper}#page=${p}" target="_blank" ` +
      `rel="noopener">Open PDF</a>${CLOSE}</span></div>${note}` +
      `<div class="pc-viewer-scroll"><div class="pc-page" data-page="${p}" ` +
      `style="width:${PC.zoom * 100}%"><img class="pc-page-img" src="${img}" ` +
      `alt="Page ${p} of ${esc(d.title)}">` +
      boxes.map((b) => rect(b, 'pc-hl')).join('') +
      strong.map((b) => rect(b, 'pc-hl pc-hl-strong')).join('') + `</div></div>`;
    const image = v.querySelector('.pc-page-img');
    image.addEventListener('load', () => {
      v.dataset.loaded = String(p);
      if (toMark) scrollToMark(v);
    }, {once: true});
    if (toMark) v.scrollIntoView({block: 'nearest'});
  }

  function scrollToMark(v) {
    const mark = v.querySelector('.pc-hl-strong') || v.querySelector('.pc-hl');
    const box = v.querySelector('.pc-viewer-scroll');
    if (mark && box) box.scrollTop = Math.max(0, mark.offsetTop - box.clientHeight / 3);
  }

  function step(delta) {
    const d = PC.data;
    if (!d) return;
    const p = Math.min(d.pages, Math.max(1, PC.page + delta));
    if (p !== PC.page) { PC.page = p; draw(true); }
  }

  function zoom(delta) {
    const i = ZOOMS.indexOf(PC.zoom) + delta;
    if (i >= 0 && i < ZOOMS.length) { PC.zoom = ZOOMS[i]; draw(false); }
  }

  function cardOf(el) {
    const cite = el.closest('a.pc-cite, a.pc-show');
    if (cite) return document.getElementById(cite.dataset.card ||
      (cite.getAttribute('href') || '').replace(/^#/, ''));
    const card = el.closest('.pc-card');
    return card && !el.closest('a[href]:not(.pc-show)') ? card : null;
  }

  document.addEventListener('click', (ev) => {
    const el = ev.target;
    if (!el.closest) return;
    const tools = {'pc-prev': () => step(-1), 'pc-next': () => step(1),
                   'pc-zoom-in': () => zoom(1), 'pc-zoom-out': () => zoom(-1),
                   'pc-close': () => { root().hidden = true; root().dataset.state = ''; }};
    const tool = el.closest('#pc-viewer button');
    if (tool && tools[tool.id]) { ev.preventDefault(); tools[tool.id](); return; }
    if (el.closest('a.pc-show')) ev.preventDefault();
    if (el.closest('summary')) return;  // opening or closing a card is not a page request
    const card = cardOf(el);
    if (card) open(card);
  });

  PC.open = open;
  PC.exportText = (kind) => {
    const el = document.querySelector(`#sources .pc-turn .pc-export[data-kind="${kind}"]`);
    return el ? el.textContent : '';
  };
  PC.download = (kind, name, type) => {
    const text = PC.exportText(kind);
    if (!text) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([text], {type: type}));
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  };
})();
</script>
"""

COPY_MARKDOWN_JS = """() => {
  const text = window.paperchatViewer.exportText('md');
  if (text) { navigator.clipboard.writeText(text); }
}"""

DOWNLOAD_MARKDOWN_JS = """() => {
  window.paperchatViewer.download('md', 'paperchat-answer.md', 'text/markdown');
}"""

DOWNLOAD_BIBTEX_JS = """() => {
  window.paperchatViewer.download('bib', 'paperchat-references.bib', 'application/x-bibtex');
}"""
