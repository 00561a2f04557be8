"""The previous service's own tests, ported (opt-in tier: pytest -m sdk_port)."""
