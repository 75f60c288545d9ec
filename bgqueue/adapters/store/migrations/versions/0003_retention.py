"""retention and baseline

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 22:06:36.798572
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# MySQL-family servers get DOUBLE, not their 4-byte FLOAT (unix seconds would be off by minutes),
# and DATETIME(6), not whole seconds. Before these variants no such store could reach head (0005
# failed there on a TEXT primary key); SQLite and PostgreSQL DDL is unchanged.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_until', TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column('decommissioned_at', TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column('baseline', sa.JSON(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_column('baseline')
        batch_op.drop_column('decommissioned_at')
        batch_op.drop_column('retention_until')

