"""nightly

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 22:33:36.622304
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# MySQL-family servers get DOUBLE, not their 4-byte FLOAT (unix seconds would be off by minutes),
# and DATETIME(6), not whole seconds. Before these variants no such store could reach head (0005
# failed there on a TEXT primary key); SQLite and PostgreSQL DDL is unchanged.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fleet_registrations',
    # TEXT, except on MySQL-family servers, which cannot index it (no store there had this table yet:
    # the migration failed on them).
    sa.Column('path', sa.Text().with_variant(sa.String(768), 'mysql', 'mariadb'), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('registered_at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('path')
    )
    op.create_table('nightly_runs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('started_at', TIMESTAMP, nullable=False),
    sa.Column('finished_at', TIMESTAMP, nullable=True),
    sa.Column('clusters', sa.Integer(), nullable=False),
    sa.Column('findings', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('nightly_findings',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('cluster', sa.String(length=64), nullable=False),
    sa.Column('check', sa.String(length=48), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('evidence', sa.JSON(), nullable=True),
    sa.Column('at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['nightly_runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nightly_findings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nightly_findings_run_id'), ['run_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('nightly_findings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nightly_findings_run_id'))

    op.drop_table('nightly_findings')
    op.drop_table('nightly_runs')
    op.drop_table('fleet_registrations')
