"""The Temporal tier: tests on a real Temporal dev server (``pytest -m temporal``), and what drives them."""
