"""Consecutive chunks overlap; merging them keeps every word once and never cuts the first
chunk short where the second one's opening words happen to occur earlier."""

from rag.retrieve import merge_text


def test_overlap_is_not_repeated() -> None:
    a = "The first chunk talks about tiling. The overlap sentence is here."
    b = "The overlap sentence is here. Then the second chunk goes on."
    assert merge_text(a, b, probe=20) == ("The first chunk talks about tiling. The overlap "
                                          "sentence is here. Then the second chunk goes on.")


def test_an_earlier_repeat_of_the_opening_words_does_not_cut_the_text() -> None:
    a = "= Θ(N d) accesses. Middle text that must stay. Last: = Θ(N d) again here"
    b = "= Θ(N d) again here and the proof ends."
    merged = merge_text(a, b, probe=8)
    assert "Middle text that must stay." in merged
    assert merged == a + " and the proof ends."


def test_chunks_without_overlap_are_joined_with_a_space() -> None:
    assert merge_text("One sentence.", "Another sentence.") == "One sentence. Another sentence."
