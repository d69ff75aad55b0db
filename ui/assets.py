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
.pc-passage { font-size: 0.9em; white-space: pre-wrap; max-height: 18em; overflow-y: auto; }
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
