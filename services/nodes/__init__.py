"""Nameko services: one per agency. They only translate entrypoints into handler calls."""
