"""What runs: model zoo, parallelism plans, graph builders, memory model, importers."""
