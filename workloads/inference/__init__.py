"""LLM serving as data: requests, the paged KV cache, the batching policies (pure functions
of queue state) and the operations of one iteration. The loop that plays them in time is
sim/serving."""
