"""Stage 1: load a live corpus, chunk it, embed it and keep it in sync in Qdrant.

Public entry points: `sync_corpus` (retrieval.sync), `search`/`search_many`
(retrieval.search), `open_store` (retrieval.store), `Embedder` (retrieval.embedding).
"""
