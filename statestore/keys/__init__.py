"""Where a state lives: its type (``statetype``), the key layout and the rules for ids and app names (``paths``)."""
