"""The packaged embedder: normalised vectors, query threads restored afterwards."""

from __future__ import annotations

import numpy as np
import torch

from core.settings import load_settings
from index.embedder import SentenceTransformerEmbedder, torch_threads


def test_query_embedding_uses_its_thread_count_and_restores_it() -> None:
    e = SentenceTransformerEmbedder(load_settings(environ={}).embedding)
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    q = e.embed(["How many attention heads?"], "query")
    p = e.embed(["The model uses 8 attention heads.", "Bananas are yellow."])
    assert torch.get_num_threads() == before
    assert q.shape == (1, 384) and np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-3)
    assert float(p[0] @ q[0]) > float(p[1] @ q[0])
