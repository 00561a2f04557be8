"""How a state is stored: plain JSON (``jsonio``), its encryption (``crypto``), the write record after it
(``record``), and the one rule of what a secret is (``secrets``)."""
