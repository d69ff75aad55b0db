"""Cross-encoder folders built locally from the packaged all-MiniLM-L6-v2 weights (no
reranker or NLI model can be installed offline): a BERT sequence classifier whose encoder is
MiniLM and whose classification head the test sets, saved as a model folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from index.embedder import resolve_model_path


def build_cross_encoder(dest: Path, labels: Sequence[str], bias: Sequence[float] | None = None,
                        seed: int = 0) -> Path:
    """Save a cross-encoder with ``len(labels)`` outputs (``id2label`` = ``labels``) to
    ``dest``. The head's weights are drawn from ``seed`` (deterministic); with ``bias`` the
    weights are zero and every pair gets exactly the logits ``bias``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = resolve_model_path("all-MiniLM-L6-v2")
    id2label = dict(enumerate(labels))
    hf_logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(labels), id2label=id2label,
        label2id={v: k for k, v in id2label.items()})
    head = model.classifier
    with torch.no_grad():
        if bias is None:
            gen = torch.Generator().manual_seed(seed)
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.5)
            head.bias.zero_()
        else:
            head.weight.zero_()
            head.bias.copy_(torch.tensor(list(bias), dtype=head.bias.dtype))
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(source).save_pretrained(dest)
    return dest
