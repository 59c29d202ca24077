"""Alembic's environment for the node and office databases (see the package's docstring).

Programmatic use (adapters.storage.migrations) hands in an open connection, inside a
transaction it owns, as ``config.attributes["connection"]``. From the ``alembic`` command
(the repository's alembic.ini), give the database with ``-x url=...`` and ``-x office=1`` for
an observer's database (both heads: what drafting a revision needs, see alembic.ini).
"""

from __future__ import annotations

from alembic import context

from adapters.storage import migrations

config = context.config
options = context.get_x_argument(as_dictionary=True)
office = bool(config.attributes.get("office", options.get("office", "") not in ("", "0", "false")))
target_metadata = migrations.target_metadata(office)
settings = dict(target_metadata=target_metadata, render_as_batch=True, compare_type=True,
                include_name=migrations.include_name(target_metadata))


def run(connection) -> None:
    context.configure(connection=connection, **settings)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=options.get("url") or config.get_main_option("sqlalchemy.url"),
                      literal_binds=True, **settings)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    run(config.attributes["connection"])
else:
    from adapters.storage.store import make_engine

    engine = make_engine(options.get("url") or config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            run(connection)
            connection.commit()
    finally:
        engine.dispose()
