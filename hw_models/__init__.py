"""What the hardware is and what one thing costs on it (no notion of time passing)."""
