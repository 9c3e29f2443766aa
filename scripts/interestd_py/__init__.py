"""interestd's Python side: the LLM catalog builder, dataset converters and the
model-file container reader/writer (schemas/modelfile.md, schemas/items.md).

Modules: container (file format), items (generic item/interaction files),
embedders (WordLlama, OpenAI-compatible, sentence-transformers), kmeans (tier
tree), naming (c-TF-IDF and chat-endpoint node names), movielens (converter),
sample (the project's synthetic sample), catalog (the `scripts/catalog` CLI).
"""
