"""Stage 1: load a live corpus, chunk it, embed it and keep it in sync in Qdrant.

Public entry points: `sync_corpus` (retrieval.sync), `search`/`search_many`
(retrieval.search), the index interface `IndexReader`/`IndexWriter` and its `Hit`
(retrieval.index), its Qdrant backend `open_store` (retrieval.store), `Embedder`
(retrieval.embedding).
"""
