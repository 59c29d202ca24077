"""Adapters to the outside world: crypto, storage, transport, importers and exporters."""
