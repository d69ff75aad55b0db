"""Paper aliases (index/names.py) and the papers a question names (rag/names.py): unit tests
on text written for the test (title pages and questions are not copied from the corpus or
the question sets)."""

from __future__ import annotations

from core.types import Paper
from index.names import author_alias, derive_aliases, introduced_names, title_names
from ingest import reading_list
from rag.names import PaperNames

FRONT = """Published as a workshop paper
GLIMMER: GRAPH LEARNING WITH
IMPLICIT MEMORY
Ada Quillfeather∗ Bo Tanaka† Cy Orr
Nowhere University
{ada, bo}@nowhere.edu
Abstract
We introduce a new retrieval model called Glimmer, which reads graphs. Unlike earlier work,
the encoder, called Graph Encoder, proposed by Smith et al. (2020), is frozen here.
We call the resulting networks FlickerNet. We propose Sparse Memory Routing, or SMR, which
routes tokens, and a training scheme which we call delayed gradient averaging (DGA).
"""


def paper(pid: str, title: str, aliases: tuple[str, ...], year: int = 2020,
          arxiv_id: str | None = None) -> Paper:
    return Paper(id=pid, title=title, authors=(), year=year, abstract="", categories=(),
                 version=None, arxiv_id=arxiv_id, pdf_url=None, source="", content_hash="",
                 pages=1, aliases=aliases)


def test_title_names_take_the_name_before_the_colon_or_in_parentheses() -> None:
    assert title_names("Glimmer: Graph Learning with Implicit Memory") == ["Glimmer"]
    assert title_names("The Heap: A Dataset of Everything") == ["Heap"]
    assert title_names("Multitask Finetuning of Everything (MFE)") == ["MFE"]
    assert title_names("Learning to Rank Things Nobody Asked For") == []
    assert title_names("We Studied Very Many Long Things Here: A Survey") == []


def test_introduced_names_keep_own_names_and_drop_cited_ones() -> None:
    names = introduced_names(FRONT)
    assert {"Glimmer", "FlickerNet", "Sparse Memory Routing", "SMR", "DGA",
            "delayed gradient averaging"} <= set(names)
    assert "Graph Encoder" not in names  # "called X, proposed by Smith et al.": not its own


def test_proposed_model_is_named_anywhere_in_the_text() -> None:
    body = ("5 Experiments\nWe train two models: a baseline and the proposed model, to which "
            "we refer as GlimNet-Big.")
    assert introduced_names("", body) == ["GlimNet-Big"]


def test_first_author_from_the_page_under_a_title_over_several_lines() -> None:
    title = "Glimmer: Graph Learning with Implicit Memory"
    assert author_alias((), 2021, FRONT, title) == "Quillfeather et al. 2021"
    assert author_alias(("Jane Q. Public",), 2019, FRONT, title) == "Public et al. 2019"
    spaced = "Glimmer: Graph Learning with Implicit Memory\nAda Quillfeather Bo Tanaka Cy Orr\n"
    assert author_alias((), None, spaced, title) == "Quillfeather et al."


def test_derived_aliases_are_distinct_and_start_with_short_names() -> None:
    title = "Glimmer: Graph Learning with Implicit Memory"
    aliases = derive_aliases(title, "", (), 2021, FRONT, short_names=("GLM-1", "Glimmer"))
    assert aliases[:2] == ("GLM-1", "Glimmer")
    assert len({a.casefold() for a in aliases}) == len(aliases)
    assert aliases[-1] == "Quillfeather et al. 2021"


def test_reading_list_gives_the_articles_short_names() -> None:
    assert reading_list.short_names("gpt1") == ("GPT", "GPT-1")
    assert "InstructGPT" in reading_list.short_names("2203.02155")
    assert reading_list.short_names("1706.03762") == ()


LIBRARY = [
    paper("a", "Glimmer: Graph Learning", ("Glimmer", "GLM", "Quillfeather et al. 2021"), 2021,
          "2101.00001"),
    paper("b", "Attention Fields for Everything", ("Fielder", "Turing et al. 2017"), 2017),
    paper("c", "Efficient Fielders: A Survey", ("Efficient Fielders", "Lovelace et al. 2020")),
    paper("d", "Spark: Sparse Things", ("Spark", "GLM", "Hopper et al. 2022"), 2022),
    paper("e", "Tiny Models Run Fast", ("TMR", "Tiny", "Hopper et al. 2019"), 2019),
]


def test_a_question_names_papers_by_alias_author_arxiv_id_or_title() -> None:
    names = PaperNames(LIBRARY)
    assert names.named("What learning rate did Glimmer use?") == ["a"]
    assert names.named("how big is glimmer-Large") == ["a"]  # case and a variant suffix
    assert names.named("In Quillfeather et al. (2021), what was the batch size?") == ["a"]
    assert names.named("What does arXiv 2101.00001v2 report?") == ["a"]
    assert names.named("In 'Attention fields for everything', how many heads?") == ["b"]
    assert names.named("Compare Spark with Glimmer on speed") == ["d", "a"]


def test_false_matches_are_refused() -> None:
    names = PaperNames(LIBRARY)
    assert names.named("How fast is Glimmer-2 compared with Glimmer 3.5?") == []  # versions
    assert names.named("What does GLM stand for?") == []  # alias shared by two papers
    # a plain word that another title uses names the paper only as "the original X"
    assert names.named("How does a Fielder encode positions?") == []
    assert names.named("How does the original Fielder encode positions?") == ["b"]
    assert names.named("What did the Fielder paper report?") == ["b"]
    assert names.named("Is a Tiny model good?") == ["e"]  # a plain word no other title uses
    # a surname is an author only with "et al.", a co-author or a year that fits
    assert names.named("Quillfeather liked graphs") == []
    assert names.named("Hopper et al. (2022) say what?") == ["d"]
    assert names.named("Hopper et al. 2019 say what?") == ["e"]
    assert sorted(names.named("What did Hopper et al. find?")) == ["d", "e"]
    assert names.named("Is Lovelace et al. (2012) right?") == []
