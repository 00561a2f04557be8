"""Plumbing with no knowledge of states: retry budgets, a thread-safe LRU, the worker thread for large work."""
