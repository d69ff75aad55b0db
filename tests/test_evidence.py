"""Quoted evidence and the refusal signal (rag.evidence) on crafted scored sentences: how
quotes are picked, passages cut to their best sentences, names looked up."""

from __future__ import annotations

import re

from core.types import Answer, Chunk, Citation, Hit, Quote
from rag.budget import build_prompt
from rag.citations import MARKER, expand
from rag.evidence import passage_excerpts, pick_evidence, signal
from rag.extract import use_quotes


def hit(n: int, text: str, title: str = "LLaMA: Open and Efficient Foundation Language Models",
        paper: str = "2302.13971") -> Hit:
    chunk = Chunk(paper_id=paper, ordinal=n, text=text, page_start=n, page_end=n,
                  char_start=0, char_end=len(text), id=n)
    return Hit(chunk=chunk, paper_title=title, paper_year=2023, score=1.0 / n)


def quote(n: int, score: float, start: int = 0) -> Quote:
    return Quote(n=n, text=f"sentence {n}.{start}", start=start, end=start + 5, score=score)


def test_quotes_best_first_at_most_two_a_passage_and_not_far_below_the_best() -> None:
    scored = [quote(1, 0.9), quote(1, 0.8, 10), quote(1, 0.7, 20), quote(2, 0.6),
              quote(3, 0.3)]
    assert [(q.n, q.start) for q in pick_evidence(scored, 3)] == [(1, 0), (1, 10), (2, 0)]
    assert [(q.n, q.start) for q in pick_evidence(scored, 1)] == [(1, 0)]
    weak = [quote(1, 0.9), quote(2, 0.5)]  # 0.5 < 0.6 of the best
    assert pick_evidence(weak, 3) == [weak[0]]
    assert pick_evidence([], 3) == []


def test_passages_are_cut_to_their_best_sentences_in_their_own_order() -> None:
    text = ("First sentence here.\nSecond one is long enough. Third one matters most. "
            "Fourth is noise.")
    spans = {s: (text.index(s), text.index(s) + len(s)) for s in
             ("Second one is long enough.", "Third one matters most.", "Fourth is noise.")}
    scored = [Quote(n=1, text=s, start=a, end=b, score=sc) for (s, (a, b)), sc in
              zip(spans.items(), (0.5, 0.9, 0.1), strict=True)]
    (cut,) = passage_excerpts([hit(1, text)], scored, 2)
    assert cut == "Second one is long enough. … Third one matters most."
    assert passage_excerpts([hit(1, text)], [], 2) == [text]  # nothing scored: whole
    prompt = build_prompt("Which one matters?", [hit(1, text)], 10_000, [cut])
    user = prompt.messages[-1]["content"]
    # the sources are sanitised (an ellipsis becomes "..."): the two sentences, in order
    assert re.search(r"Second one is long enough\. (…|\.\.\.) Third one matters most\.", user)
    assert "Fourth is noise" not in user


def test_names_are_looked_up_in_passages_titles_and_front_matter() -> None:
    hits = [hit(1, "We train LLaMA-65B on 1.4T tokens with AdamW.")]
    scored = [Quote(n=1, text=hits[0].chunk.text, start=0, end=10, score=0.7)]
    assert signal("How many tokens was LLaMA-65B trained on?", hits, scored, 0.6
                  ).name_coverage == 1.0
    asked = signal("How many parameters does GPT-4 have on H100 GPUs?", hits, scored, 0.6)
    assert asked.name_coverage == 0.0 and asked.best_sentence == 0.7
    gpus = [hit(1, "FlashAttention is 3x faster on NVIDIA A100 GPUs.")]
    on_gpus = [Quote(n=1, text=gpus[0].chunk.text, start=0, end=10, score=0.7)]
    h100 = "What speedup does FlashAttention achieve on NVIDIA H100 GPUs?"
    assert signal(h100, gpus, on_gpus, 0.6).name_coverage == 0.0  # 3 of 4, but not H100
    plain = "What speedup does FlashAttention achieve on NVIDIA Volta GPUs?"
    assert signal(plain, gpus, on_gpus, 0.6).name_coverage == 0.75  # a plain name: a share
    by_author = "What optimizer did Touvron et al. use?"
    assert signal(by_author, hits, scored, 0.6).name_coverage == 0.0
    assert signal(by_author, hits, scored, 0.6, "Hugo Touvron, Thibaut Lavril").name_coverage \
        == 1.0


def test_calibration_picks_thresholds_on_tune_rows_only() -> None:
    from benchmarks.calibrate_refusal import choose, scores

    def row(i: int, unanswerable: bool, dense: float, best: float, names: float) -> dict:
        return {"id": str(i), "unanswerable": unanswerable, "best_dense": dense,
                "best_sentence": best, "term_coverage": 0.5, "name_coverage": names}

    tune = [row(1, True, 0.15, 0.20, 1.0),  # off-topic: nothing close
            row(2, True, 0.50, 0.55, 0.0),  # near-topic: names the library lacks
            *(row(10 + i, False, 0.45 + i / 100, 0.40 + i / 100, 1.0) for i in range(20))]
    dense, best, names = choose(tune, max_false=0.05)
    assert scores(tune, (dense, best, names))["f1"] == 1.0
    assert 0.0 < names <= 1.0 and best <= 0.40 and 0.20 <= dense < 0.45
    assert scores(tune, (dense, best, names))["false_abstention_rate"] == 0.0


def test_a_quotes_own_reference_markers_are_not_passage_numbers() -> None:
    # "Adam optimizer [31]" quoted: [31] is the paper's reference, not passage 31 of the
    # answer (eval counted it as an invalid citation).
    text = "All models are trained with fp16 activations and the Adam optimizer [31]."
    quote = Quote(n=1, text=text, start=0, end=len(text), title="OPT", page=2)
    source = Citation(n=1, paper_id="2205.01068", title="OPT", page=2, text=text, url=None,
                      pdf_url=None, chunk_id=7)
    answer = Answer(question="Which optimizer?", answer="", abstained=False, sources=[source])
    use_quotes(answer, [quote])
    assert answer.answer == ("“All models are trained with fp16 activations and the Adam "
                             "optimizer [ref 31].” [1]")
    assert {n for m in MARKER.finditer(answer.answer) for n in expand(m.group(1))} == {1}
    assert [s.citations for s in answer.sentences] == [[1]]
