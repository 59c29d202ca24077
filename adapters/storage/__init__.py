"""Per-node storage on SQLAlchemy 2.x (SQLite by default, PostgreSQL by URL)."""
