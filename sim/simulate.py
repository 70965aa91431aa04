"""The one public entry point: simulate(scenario) -> SimResult (filled in below)."""
def simulate(scenario):  # replaced by the core entry point
    raise NotImplementedError
