"""Alembic environment: runs on the connection handed over by bgqueue.adapters.store.db.upgrade."""
from alembic import context
from sqlalchemy import create_engine

from bgqueue.adapters.store.models import Base

config = context.config
target_metadata = Base.metadata

conn = config.attributes.get("connection")
if conn is None:  # plain `alembic` CLI use
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        context.run_migrations()
else:
    context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
    context.run_migrations()
