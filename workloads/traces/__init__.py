"""Importers of real traces (PyTorch profiler/Kineto, Execution Trace) and exporters."""
