"""``python -m statestore.cli``: the ``statestore`` command."""

from __future__ import annotations

from . import main

main()
