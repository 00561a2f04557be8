"""The state logic: ``Store`` and what it runs on, top-down.

``store`` (the operations and their input checks) -> ``coalesce`` (concurrent changes share a write) -> ``cas``
(the compare-and-swap loop and its cache) -> ``codec`` / ``crypto`` (JSON, encryption) -> ``paths`` (the key
layout, id rules), ``statetype``, ``secrets`` (the one secret rule). Nothing here does I/O except through an
``ObjectBackend``.
"""
