"""validation: signoffs, check results, decisions, metric summaries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 21:51:02.096938
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# MySQL-family servers get DOUBLE, not their 4-byte FLOAT (unix seconds would be off by minutes),
# and DATETIME(6), not whole seconds. Before these variants no such store could reach head (0005
# failed there on a TEXT primary key); SQLite and PostgreSQL DDL is unchanged.
FLOAT = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), 'mysql', 'mariadb')
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('signoffs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('cluster', sa.String(length=64), nullable=False),
    sa.Column('change_key', sa.String(length=64), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('signed_by', sa.String(length=128), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('at', TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signoffs', schema=None) as batch_op:
        batch_op.create_index('ix_signoffs_cluster_change', ['cluster', 'change_key'], unique=False)

    op.create_table('check_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=48), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('retryable', sa.Boolean(), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('threshold', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('evidence', sa.JSON(), nullable=True),
    sa.Column('duration_ms', FLOAT, nullable=True),
    sa.Column('at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('check_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_check_results_deployment_id'), ['deployment_id'], unique=False)

    op.create_table('decisions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('verdict', sa.String(length=8), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=True),
    sa.Column('at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decisions_deployment_id'), ['deployment_id'], unique=False)

    op.create_table('metric_summaries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('phase', sa.String(length=24), nullable=False),
    sa.Column('metric', sa.String(length=48), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('min', FLOAT, nullable=True),
    sa.Column('max', FLOAT, nullable=True),
    sa.Column('mean', FLOAT, nullable=True),
    sa.Column('p50', FLOAT, nullable=True),
    sa.Column('p95', FLOAT, nullable=True),
    sa.Column('p99', FLOAT, nullable=True),
    sa.Column('started_at', TIMESTAMP, nullable=True),
    sa.Column('ended_at', TIMESTAMP, nullable=True),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('metric_summaries', schema=None) as batch_op:
        batch_op.create_index('ix_metric_summaries_dep', ['deployment_id', 'phase'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('metric_summaries', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_summaries_dep')

    op.drop_table('metric_summaries')
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decisions_deployment_id'))

    op.drop_table('decisions')
    with op.batch_alter_table('check_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_results_deployment_id'))

    op.drop_table('check_results')
    with op.batch_alter_table('signoffs', schema=None) as batch_op:
        batch_op.drop_index('ix_signoffs_cluster_change')

    op.drop_table('signoffs')
