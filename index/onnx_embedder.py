"""The embedding model on onnxruntime: exported once from the installed weights (no download)
into a folder we own, fp32 or int8 (dynamic quantisation), run with mean/CLS pooling and L2
normalisation exactly as sentence-transformers does.

    <onnx_dir>/<key>/model.onnx        fp32: TorchScript export, fused by onnxruntime's optimiser
    <onnx_dir>/<key>/model_int8.onnx   int8 weights, ``quantize_dynamic`` (QInt8, per channel)

``<key>`` hashes the model folder's files (names, sizes, times) and the export recipe; each
file appears atomically (written under a temporary name, then renamed), so a crash or two
processes exporting at once never leave a half-written model behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.settings import EmbeddingSettings
from index.embedder import Kind, family_prefixes, quiet_loading, resolve_model_path

log = logging.getLogger(__name__)
EXPORT_RECIPE = "torchscript-eager;ort-bert-fusion;int8=qint8-per-channel;v2"
FUSED_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert"}  # ORT's BERT optimiser fits
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ConfigError("embedding.backend 'onnx' needs onnxruntime, which is not installed.",
                          "Run `pip install 'paperchat[onnx]'` or set embedding.backend = "
                          "'torch'.") from err
    return onnxruntime


def export_key(model_dir: Path) -> str:
    """A hash of the model folder's files and of the export recipe."""
    parts = [EXPORT_RECIPE]
    for f in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        st = f.stat()
        parts.append(f"{f.relative_to(model_dir)}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _pooling(model_dir: Path) -> str:
    """'mean' or 'cls', from the sentence-transformers pooling config (mean if absent)."""
    for cfg in model_dir.glob("*_Pooling/config.json"):
        modes = json.loads(cfg.read_text())
        if modes.get("pooling_mode_cls_token"):
            return "cls"
        if not modes.get("pooling_mode_mean_tokens", True):
            raise ConfigError(f"The model in {model_dir} pools in a way the ONNX backend does "
                              "not implement (only mean and CLS).",
                              "Set embedding.backend = 'torch'.")
    return "mean"


def _export_fp32(model_dir: Path, target: Path) -> None:
    """TorchScript export of the model with eager attention (the graph onnxruntime's BERT
    optimiser recognises: attention, layer norm and GELU fused), then that optimisation."""
    import torch
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        """Keyword inputs (the TorchScript exporter passes them by position, which
        transformers 5 models reject); the last hidden state as the one output."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    with quiet_loading():
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {n: {0: "batch", 1: "seq"} for n in (*INPUTS, "last_hidden_state")}
    raw = target.with_name(target.name + ".raw")
    with _quiet_export():
        torch.onnx.export(Encoder(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                          str(raw), input_names=list(INPUTS), output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    config = model.config
    if config.model_type not in FUSED_TYPES:
        os.replace(raw, target)
        return
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_export():
        optimised = optimize_model(str(raw), model_type="bert",
                                   num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size)
        optimised.save_model_to_file(str(target))
    raw.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporters' and optimiser's warnings and progress lines off the terminal."""
    noise = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("", "torch.onnx", "onnxruntime")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(noise), \
            contextlib.redirect_stderr(noise):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _quantize(fp32: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_export():
        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _atomic(target: Path, make: Any, *args: Any) -> None:
    """``make(*args, tmp_path)``, then rename onto ``target`` (the winner of a race stays)."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".onnx")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        make(*args, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        for extra in target.parent.glob(f"{tmp.name}*"):  # exporters' side files
            extra.unlink(missing_ok=True)


def exported_model(model_dir: Path, onnx_dir: Path, int8: bool) -> Path:
    """The ONNX file of ``model_dir`` (exported, and quantised, on first use)."""
    folder = onnx_dir / export_key(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        log.warning("Exporting the embedding model to ONNX once, into %s.", folder)
        _atomic(fp32, _export_fp32, model_dir)
    if not int8:
        return fp32
    quant = folder / "model_int8.onnx"
    if not quant.is_file():
        log.warning("Quantising the embedding model to int8 once, into %s.", folder)
        _atomic(quant, _quantize, fp32)
    return quant


class OnnxEmbedder:
    """The embedding model on onnxruntime (CPU): batched, length-sorted, normalised. A
    second one-thread session answers single queries (``embedding.query_threads``)."""

    def __init__(self, settings: EmbeddingSettings, onnx_dir: Path, int8: bool = False) -> None:
        ort = require_onnxruntime()
        from transformers import AutoTokenizer

        self.settings = settings
        self.name = settings.model
        self.device = "cpu"
        self.backend = "onnx-int8" if int8 else "onnx"
        self.vectors = "int8" if int8 else "fp32"
        model_dir = Path(resolve_model_path(settings.model))
        if not model_dir.is_dir():
            raise ConfigError(f"The ONNX backend needs the embedding model {settings.model!r} "
                              "as a local folder.", "Set embedding.backend = 'torch'.")
        with quiet_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.pooling = _pooling(model_dir)
        self.path = exported_model(model_dir, onnx_dir, int8)
        self._ort = ort
        self.session = self._session(0)
        self._query_session: Any = None
        self.max_len = min(settings.max_seq_length, self.tokenizer.model_max_length or 512)
        self.query_prefix, self.passage_prefix = family_prefixes(settings.model, settings)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.dim = int(self._run(self.session, ["dimension probe"]).shape[1])

    def _session(self, threads: int) -> Any:
        opts = self._ort.SessionOptions()
        opts.log_severity_level = 3
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        return self._ort.InferenceSession(str(self.path), opts,
                                          providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        inputs = [prefix + t for t in texts] if prefix else texts
        session = self.session
        if kind == "query" and self.settings.query_threads > 0:
            if self._query_session is None:
                self._query_session = self._session(self.settings.query_threads)
            session = self._query_session
        order = np.argsort([-len(t) for t in inputs], kind="stable")
        out = np.empty((len(inputs), self.dim), dtype=np.float32)
        size = max(1, self.settings.batch_size)
        for start in range(0, len(inputs), size):
            idx = order[start:start + size]
            out[idx] = self._run(session, [inputs[i] for i in idx])
        return out

    def _run(self, session: Any, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_len,
                             return_tensors="np")
        mask = enc["attention_mask"].astype(np.int64)
        feed = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": mask,
                "token_type_ids": enc.get("token_type_ids", np.zeros_like(mask)).astype(np.int64)}
        hidden = session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0]
        if self.pooling == "cls":
            vec = hidden[:, 0]
        else:
            m = mask[..., None].astype(np.float32)
            vec = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        norms = np.linalg.norm(vec, axis=1, keepdims=True)
        return np.ascontiguousarray(vec / np.clip(norms, 1e-12, None), dtype=np.float32)
