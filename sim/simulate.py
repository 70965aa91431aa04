"""The one public entry point: simulate(scenario) -> SimResult (filled in below)."""
