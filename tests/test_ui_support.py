"""The chat's rendering of checked answers (pure functions): each sentence styled by its
support with the reason in a tooltip, quoted answers labelled with the model's own text
collapsed, the evidence block, reflowed passages; and the eval figures of the check."""

from __future__ import annotations

from html.parser import HTMLParser

from core.types import Answer, Citation, Quote, SentenceCheck
from eval.record import CheckedSentence, EvalRecord
from eval.score import score_record, supported_share, unsupported_numbers
from rag.support import check_answer
from ui import render

PASSAGE = ("On the WMT 2014 English-to-German translation task, the big transformer model\n"
           "establishes a new state-of-the-art BLEU score of 28.4. On the WMT 2014\n"
           "English-to-French translation task, our big model achieves a BLEU score of 41.0.")


def source(n: int = 1) -> Citation:
    return Citation(n=n, paper_id="1706.03762", title="Attention Is All You Need", page=8,
                    text=PASSAGE, url=None, pdf_url=None, year=2017)


def checked(text: str) -> Answer:
    sources = [source()]
    a = Answer(question="What BLEU on English-to-German?", answer=text, abstained=False,
               citations=sources, sources=sources)
    a.sentences = check_answer(text, sources, a.question)
    return a


class Spans(HTMLParser):
    """(class, title, text) of the sentence spans of some HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[list[str]] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "span" and "pc-sent" in (a.get("class") or ""):
            self.spans.append([a.get("class") or "", a.get("title") or "", ""])
            self.depth = 1
        elif self.depth and tag == "span":
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag == "span":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.spans[-1][2] += data


MIXED = ("The big Transformer reached a BLEU score of 28.4 on English-to-German [1]. "
         "On English-to-German it reached 41.0 BLEU [1].")


def test_an_unsupported_sentence_is_flagged_with_the_reason_as_tooltip() -> None:
    html = render.answer_html(checked(MIXED), 0)
    parser = Spans()
    parser.feed(html)
    (cls1, title1, text1), (cls2, title2, text2) = parser.spans
    assert "pc-supported" in cls1 and title1.startswith("Supported by [1]:")
    assert "28.4" in text1 and "unsupported" not in text1
    assert "pc-unsupported" in cls2 and text2.endswith("unsupported")  # the visible flag
    assert "41.0 is not in the sentence of [1] about English-to-German" in title2
    assert "href='#src-0-1'" in html  # citations still link to their cards
    assert "1 of 2 sentences supported by their citations; 1 unsupported" in html


def test_a_quoted_answer_is_labelled_and_keeps_the_models_text() -> None:
    a = checked("Quote [1].")
    a.mode, a.model_answer, a.degenerate = "extract", "The the the the [1].", ["repetition"]
    a.sentences = [SentenceCheck(text="Quote [1].", citations=[1], support="supported")]
    html = render.answer_html(a, 2)
    assert "Quoted from the sources: the model's answer was replaced (it repeated itself)" \
        in html
    assert "<details class='pc-model-answer'>" in html and "The the the the [1]." in html


def test_evidence_block_sits_above_the_cards_reflowed_with_paper_and_page() -> None:
    a = checked(MIXED)
    a.evidence = [Quote(n=1, text="establishes a new\nstate-of-the-art BLEU score of 28.4.",
                        start=0, end=10, title="Attention Is All You Need", page=8)]
    html = render.sources_html(a, 3)
    ev, card = html.index("pc-evidence"), html.index("pc-card")
    assert ev < card and "Evidence" in html[ev:card]
    assert "“establishes a new state-of-the-art BLEU score of 28.4.”" in html
    assert "Attention Is All You Need, p. 8" in html and "href='#src-3-1'" in html[ev:card]


def test_cards_show_passages_as_reflowed_paragraphs() -> None:
    html = render.highlighted(PASSAGE, "28.4 BLEU on English-to-German [1].")
    assert "\n" not in html and "transformer model establishes" in html
    assert "<mark class='pc-support'>On the WMT 2014 English-to-German" in html


def test_eval_counts_supported_sentences_and_unsupported_numbers() -> None:
    a = checked(MIXED)
    rec = EvalRecord.model_validate({
        "id": "q", "question": "?", "answer": a.answer, "abstained": False,
        "shown": [{"chunk_id": 1, "text": PASSAGE, "paper_id": "1706.03762"}],
        "citations": [{"n": 1, "chunk_id": 1, "paper_id": "1706.03762"}],
        "sentences": [{"text": x.text, "citations": x.citations, "support": x.support,
                       "missing": x.missing} for x in a.sentences]})
    assert supported_share(rec) == 0.5 and unsupported_numbers(rec) == 1.0
    metrics = score_record(rec)
    assert metrics.citations["supported_share"] == 0.5
    assert metrics.answers["unsupported_numbers"] == 1.0
    good = checked(MIXED.split(" On")[0])
    rec.sentences = [CheckedSentence(text=x.text, citations=x.citations, support=x.support,
                                     missing=x.missing) for x in good.sentences]
    assert supported_share(rec) == 1.0 and unsupported_numbers(rec) == 0.0
    rec.sentences = [CheckedSentence(text="It used 96 GPUs.")]
    assert unsupported_numbers(rec) == 1.0, "an uncited number found in no passage shown"
