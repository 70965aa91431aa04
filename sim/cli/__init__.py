"""The ``clustersim`` command line (typer). One module per command group."""
