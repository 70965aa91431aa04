"""Where numbers come from: microbenchmarks, parsers, fitting, profiles, validation."""
