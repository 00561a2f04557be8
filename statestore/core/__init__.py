"""The state logic: ``Store`` and what it runs on, top-down.

``store`` (the operations; ``boundary`` runs each as one operation and checks its arguments) -> ``coalesce``
(concurrent changes share a write) -> ``cas`` (the compare-and-swap loop and its cache) -> ``changes`` (what a
change does to a draft of the state). ``maintenance`` holds the listings, pruning and history behind ``Store``.
How a state is stored is ``statestore.codec``; where it lives, ``statestore.keys``.
"""
