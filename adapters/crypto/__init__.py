"""Cryptography and canonical encoding for protocol cluebus/1 (PyNaCl, RFC 8785)."""
