"""Message contracts of protocol cluebus/1: the envelope and every body kind, versioned."""
