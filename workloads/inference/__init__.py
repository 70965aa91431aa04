"""LLM serving: requests, paged KV cache, batching policies and the serving loop."""
