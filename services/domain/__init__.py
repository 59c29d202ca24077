"""Domain logic: plain Python, no framework imports."""
