"""Microbenchmark runners: kernels (torch) and collectives (torch.distributed).

Each runner writes a tidy CSV, one row per measured point, keeping the raw samples
(STYLE.md 9, after ``torch.utils.benchmark``): device, torch version, date, samples,
median and IQR. ``calibration.parsers.read_microbench`` reads them back.
"""
