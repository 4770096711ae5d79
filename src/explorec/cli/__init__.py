"""Command line interface (``explorec``)."""
