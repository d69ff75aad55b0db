"""The page's CSS and the script that makes [n] citations bring up their source card."""

CSS = """
.pc-answer { line-height: 1.5; }
.pc-streaming { opacity: 0.9; }
a.pc-cite { font-weight: 600; text-decoration: none; padding: 0 1px; border-radius: 3px;
  background: var(--color-accent-soft); cursor: pointer; }
.pc-abstain { border-left: 4px solid #d97706; background: #fffbeb; color: #78350f;
  padding: 8px 12px; border-radius: 4px; }
.pc-error { border-left: 4px solid #b91c1c; background: #fef2f2; color: #7f1d1d;
  padding: 8px 12px; border-radius: 4px; }
.dark .pc-error { background: #3b1010; color: #fecaca; }
.dark .pc-abstain { background: #3b2a10; color: #fde68a; }
.pc-note, .pc-timings { color: var(--body-text-color-subdued); }
.pc-turn { margin-bottom: 14px; }
.pc-q { font-weight: 600; margin: 6px 0; }
.pc-query { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical;
  overflow: hidden; }
.pc-card { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 6px 10px;
  margin: 6px 0; transition: box-shadow 0.3s; }
.pc-card.pc-active { box-shadow: 0 0 0 3px var(--color-accent); }
.pc-card summary { cursor: pointer; }
.pc-n { font-weight: 700; }
.pc-meta { font-size: 0.85em; color: var(--body-text-color-subdued); margin: 2px 0 4px; }
.pc-passage { font-size: 0.9em; max-height: 18em; overflow-y: auto; }
.pc-sent.pc-unsupported { text-decoration: underline wavy #dc2626; text-decoration-skip-ink: none;
  background: rgba(220, 38, 38, 0.12); border-radius: 3px; cursor: help; }
.pc-sent.pc-partial { text-decoration: underline dotted #d97706; text-decoration-thickness: 2px;
  background: rgba(217, 119, 6, 0.12); border-radius: 3px; cursor: help; }
/* the reason of a flagged sentence, shown at once on hover (the chat's HTML keeps only
   standard attributes: the text is the span's title) */
.pc-unsupported, .pc-partial { position: relative; }
.pc-unsupported:hover::after, .pc-partial:hover::after { content: attr(title);
  position: absolute; left: 0;
  top: calc(100% + 4px); z-index: 50; width: max-content; max-width: 26em; padding: 5px 9px;
  border-radius: 5px; background: #1f2937; color: #f9fafb; font-size: 0.8rem; line-height: 1.35;
  white-space: normal; text-decoration: none; box-shadow: 0 2px 8px rgba(0, 0, 0, 0.25); }
.pc-sflag { font-size: 0.68em; font-weight: 700; text-transform: uppercase; margin-left: 3px;
  color: #b91c1c; letter-spacing: 0.03em; }
.pc-partial .pc-sflag { color: #b45309; }
.pc-quoted-label { font-size: 0.85em; font-weight: 600; margin-bottom: 4px;
  color: var(--body-text-color-subdued); }
.pc-model-answer { margin-top: 6px; font-size: 0.9em; }
.pc-model-answer summary { cursor: pointer; color: var(--body-text-color-subdued); }
.pc-evidence { border-left: 3px solid var(--color-accent); padding: 4px 10px; margin: 6px 0; }
.pc-evidence-h { font-weight: 700; }
.pc-evidence ul { margin: 2px 0; padding-left: 1.1em; }
.pc-quote { font-size: 0.9em; margin: 4px 0; }
mark.pc-support { background: #fde047; color: inherit; }
.pc-links { font-size: 0.85em; }
#sources { max-height: 640px; overflow-y: auto; }
.pc-flag { font-size: 0.8em; font-weight: 600; color: #9a3412; background: #ffedd5;
  border: 1px solid #fdba74; border-radius: 4px; padding: 0 4px; white-space: nowrap; }
.pc-up { color: #15803d; }
.pc-down { color: #b91c1c; font-weight: 600; }
"""

HEAD = """
<script>
document.addEventListener('click', (ev) => {
  const link = ev.target.closest ? ev.target.closest('a.pc-cite') : null;
  if (!link) return;
  ev.preventDefault();
  const id = (link.getAttribute('href') || '').replace(/^#/, '');
  const card = document.getElementById(id);
  if (!card) return;
  card.open = true;
  document.querySelectorAll('.pc-card.pc-active').forEach((c) => c.classList.remove('pc-active'));
  card.classList.add('pc-active');
  card.scrollIntoView({behavior: 'smooth', block: 'center'});
}, true);
</script>
"""

COPY_JS = """(text) => {
  if (text) { navigator.clipboard.writeText(text); }
  return text;
}"""
