"""Protocol cluebus/1: composing signed envelopes and verifying received ones."""
