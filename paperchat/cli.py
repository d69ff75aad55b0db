"""The `paperchat` command: parses arguments, builds the settings, calls one function per
subcommand, and turns errors into a one-line message and an exit code (in one place)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import PaperchatError
from core.settings import Settings, describe, load_settings

Handler = Callable[[Settings, argparse.Namespace], int]


def _ingest(s: Settings, a: argparse.Namespace) -> int:
    from ingest.commands import run_ingest

    return run_ingest(s, a.items, a.search, a.max, quiet=a.quiet, as_json=a.json)


def _reading_list(s: Settings, a: argparse.Namespace) -> int:
    from ingest.commands import print_reading_list

    return print_reading_list(a.json)


def _list(s: Settings, a: argparse.Namespace) -> int:
    from ingest.commands import list_papers

    return list_papers(s, a.json)


def _remove(s: Settings, a: argparse.Namespace) -> int:
    from ingest.commands import remove_papers

    return remove_papers(s, a.ids)


def _reindex(s: Settings, a: argparse.Namespace) -> int:
    from ingest.commands import run_reindex

    return run_reindex(s)


def _years(a: argparse.Namespace) -> tuple[int, int] | None:
    from rag.retrieve import parse_years

    return parse_years(a.year) if a.year is not None else None


def _search(s: Settings, a: argparse.Namespace) -> int:
    from rag.commands import run_search

    return run_search(s, a.query, a.k, a.paper, a.json, years=_years(a))


def _ask(s: Settings, a: argparse.Namespace) -> int:
    from rag.commands import run_ask

    return run_ask(s, a.question, a.k, a.paper, a.json, years=_years(a), fmt=a.format)


def _serve_llm(s: Settings, a: argparse.Namespace) -> int:
    from serve.server import serve

    return serve(s, ready_file=a.ready_file, reuse=a.reuse)


def _chat(s: Settings, a: argparse.Namespace) -> int:
    from ui.app import run_chat

    return run_chat(s)


def _eval(s: Settings, a: argparse.Namespace) -> int:
    from eval.commands import run_eval

    return run_eval(s, a)


def _config(s: Settings, a: argparse.Namespace) -> int:
    if a.describe:
        for name, typ, desc in describe():
            print(f"{name:36} {typ:28} {desc}")
        return 0
    print(json.dumps(s.to_toml_dict(), indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paperchat", description=__doc__)
    p.add_argument("--data-dir", type=Path, help="library location (PAPERCHAT_DATA_DIR)")
    p.add_argument("--config", type=Path, help="TOML settings file (PAPERCHAT_CONFIG)")
    p.add_argument("--llm-url", help="OpenAI-compatible server URL (llm.base_url)")
    p.add_argument("--model", help="model name on the server (llm.model)")
    p.add_argument("--embedding-model", help="sentence-transformers model (embedding.model)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, fn: Handler, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(handler=fn)
        return sp

    sp = cmd("ingest", _ingest, "add papers: arXiv ids or URLs, PDF files or folders, "
             "PDF URLs; no argument ingests the built-in reading list")
    sp.add_argument("items", nargs="*")
    sp.add_argument("--search", help="arXiv search query")
    sp.add_argument("--max", type=int, default=10, help="results of --search")
    sp.add_argument("--quiet", "-q", action="store_true")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")
    sp.add_argument("--extractor", choices=["pypdf", "pypdfium2"])
    sp.add_argument("--runner", choices=["local", "ray"],
                    help="where the stages run (ingest.runner): this machine, or Ray Data")
    sp.add_argument("--ray-address", metavar="ADDR",
                    help="Ray cluster to run on (ray.address); none starts a local instance")
    sp = cmd("reading-list", _reading_list, "print the built-in reading list")
    sp.add_argument("--json", action="store_true")
    sp = cmd("list", _list, "list the papers in the library")
    sp.add_argument("--json", action="store_true")
    sp = cmd("remove", _remove, "remove papers from the library")
    sp.add_argument("ids", nargs="+")
    cmd("reindex", _reindex, "rebuild chunks and vectors from the stored text")
    for name, fn, what in (("search", _search, "query"), ("ask", _ask, "question")):
        sp = cmd(name, fn, "ranked passages for a query" if name == "search"
                 else "answer a question with citations")
        sp.add_argument(what)
        sp.add_argument("-k", type=int, default=None, help="passages (retrieval.k)")
        sp.add_argument("--paper", nargs="+", action="extend", metavar="ID",
                        help="restrict to these paper ids (--paper A B or --paper A --paper B)")
        sp.add_argument("--year", metavar="FROM-TO",
                        help="restrict to papers of these years: 2020, 2017-2020, 2019-, -2019")
        sp.add_argument("--json", action="store_true")
        if name == "ask":
            sp.add_argument("--format", choices=["text", "markdown", "bibtex", "json"],
                            default="text", help="text (streamed, then the sources), or once "
                            "done: Markdown with numbered references, BibTeX of the cited "
                            "papers, JSON (= --json)")
            sp.add_argument("--mode", dest="answer_mode",
                            choices=["auto", "generate", "extract"],
                            help="auto: the model's answer, or quotes when it degenerates; "
                            "generate: the model's answer; extract: quotes, no model "
                            "(llm.answer_mode)")
    sp = cmd("serve-llm", _serve_llm, "start the vLLM model server and wait; once it is "
             "healthy it prints 'paperchat serve-llm: ready URL'")
    add_serve_arguments(sp)
    sp = cmd("chat", _chat, "open the chat in the browser")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp = cmd("eval", _eval, "score retrieval and answers on a question set")
    from eval.args import add_eval_arguments

    add_eval_arguments(sp)
    sp = cmd("config", _config, "print the effective settings")
    sp.add_argument("--describe", action="store_true", help="list every setting")
    return p


def add_serve_arguments(sp: argparse.ArgumentParser) -> None:
    """The options of `paperchat serve-llm` (each one an llm.serve_* setting, but the last two)."""
    sp.add_argument("--port", dest="serve_port", type=int, metavar="PORT",
                    help="port to listen on; 0 picks a free one (llm.serve_port)")
    sp.add_argument("--tensor-parallel", type=int, metavar="N",
                    help="GPUs per model replica (llm.serve_tensor_parallel)")
    sp.add_argument("--data-parallel", type=int, metavar="N",
                    help="model replicas behind the endpoint (llm.serve_data_parallel)")
    sp.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"],
                    help="vLLM dtype; auto follows the CPU's features (llm.serve_dtype)")
    sp.add_argument("--gpu-memory-utilization", type=float, metavar="SHARE",
                    help="share of GPU memory vLLM takes on CUDA "
                         "(llm.serve_gpu_memory_utilization)")
    sp.add_argument("--max-model-len", type=int, metavar="TOKENS",
                    help="context length (llm.serve_max_model_len; default: 2048 on CPU, "
                         "the model's own on CUDA)")
    sp.add_argument("--ready-file", type=Path, metavar="PATH",
                    help="write the server's URL to PATH (atomically) once it is healthy; "
                         "removed when it stops")
    sp.add_argument("--reuse", action="store_true",
                    help="if a server already answers at llm.base_url, report it ready and exit")


SERVE_OPTIONS = ("serve_port", "tensor_parallel", "data_parallel", "dtype",
                 "gpu_memory_utilization", "max_model_len")


def cli_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    pairs = {("paths", "data_dir"): args.data_dir, ("llm", "base_url"): args.llm_url,
             ("llm", "model"): args.model, ("embedding", "model"): args.embedding_model,
             ("ingest", "extractor"): getattr(args, "extractor", None),
             ("ingest", "runner"): getattr(args, "runner", None),
             ("ray", "address"): getattr(args, "ray_address", None),
             ("ui", "host"): getattr(args, "host", None),
             ("ui", "port"): getattr(args, "port", None),
             ("llm", "answer_mode"): getattr(args, "answer_mode", None)}
    for name in SERVE_OPTIONS:
        key = name if name.startswith("serve_") else f"serve_{name}"
        pairs[("llm", key)] = getattr(args, name, None)
    out: dict[str, dict[str, Any]] = {}
    for (section, key), value in pairs.items():
        if value is not None:
            out.setdefault(section, {})[key] = str(value) if isinstance(value, Path) else value
    return out


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "sentence_transformers", "faiss", "arxiv", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        settings = load_settings(cli_overrides(args), config_file=args.config)
        code = int(args.handler(settings, args))
    except PaperchatError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: the library is intact; run the command again to finish.",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`paperchat list --json | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
