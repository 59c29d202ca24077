"""Use cases of an agency node: plain Python over the store, protocol and a publish function."""
