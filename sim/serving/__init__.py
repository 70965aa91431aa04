"""LLM serving in time: the serving loop and the priced iteration (the requests, KV cache and
batching policies it runs are data and pure functions in workloads/inference)."""
