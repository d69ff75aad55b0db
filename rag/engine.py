"""Build the answer engine once per process (library, embedder, retriever, model client)."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings
from index.library import Library
from index.open import open_library
from rag.answer import Answerer
from rag.llm import LLMClient
from rag.retrieve import Retriever


@dataclass
class Engine:
    library: Library
    retriever: Retriever
    llm: LLMClient
    answerer: Answerer


def build_engine(settings: Settings) -> Engine:
    library = open_library(settings)
    retriever = Retriever(settings, library)
    llm = LLMClient(settings.llm)
    return Engine(library, retriever, llm, Answerer(settings, retriever, llm))
