"""Bytes per element of the number formats a scenario or a profile can name."""

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
