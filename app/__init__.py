"""The what-if explorer (Streamlit). Thin callers of sim.simulate; no modelling here."""
