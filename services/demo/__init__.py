"""`cluebus demo`: every node in one process, realistic referrals played end to end."""
