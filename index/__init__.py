"""The library on disk: SQLite (papers, pages, chunks, vectors), FAISS, BM25, manifest."""
