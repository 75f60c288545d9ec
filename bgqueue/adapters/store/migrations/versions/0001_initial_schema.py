"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 21:35:18.502600
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# MySQL-family servers get DOUBLE, not their 4-byte FLOAT (unix seconds would be off by minutes),
# and DATETIME(6), not whole seconds. Before these variants no such store could reach head (0005
# failed there on a TEXT primary key); SQLite and PostgreSQL DDL is unchanged.
FLOAT = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), 'mysql', 'mariadb')
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('fleet_name', sa.String(length=64), nullable=False),
    sa.Column('fleet_path', sa.Text(), nullable=False),
    sa.Column('fleet_sha256', sa.String(length=64), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('finished_at', TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('deployments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('batch_id', sa.String(length=36), nullable=False),
    sa.Column('cluster', sa.String(length=64), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('phase', sa.String(length=24), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('facts', sa.JSON(), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('updated_at', TIMESTAMP, nullable=False),
    sa.Column('phase_deadline', TIMESTAMP, nullable=True),
    sa.Column('switch_started_at', TIMESTAMP, nullable=True),
    sa.Column('switch_ended_at', TIMESTAMP, nullable=True),
    sa.Column('switch_duration_ms', FLOAT, nullable=True),
    sa.Column('writes_blocked_ms', FLOAT, nullable=True),
    sa.Column('finished_at', TIMESTAMP, nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployments_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index('ix_deployments_cluster', ['cluster', 'created_at'], unique=False)

    op.create_table('checkpoints',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('old_primary', sa.String(length=128), nullable=False),
    sa.Column('new_primary', sa.String(length=128), nullable=False),
    sa.Column('old_gtid', sa.Text(), nullable=True),
    sa.Column('old_binlog_file', sa.String(length=128), nullable=True),
    sa.Column('old_binlog_pos', sa.Integer(), nullable=True),
    sa.Column('new_gtid', sa.Text(), nullable=True),
    sa.Column('new_binlog_file', sa.String(length=128), nullable=True),
    sa.Column('new_binlog_pos', sa.Integer(), nullable=True),
    sa.Column('captured_at', TIMESTAMP, nullable=False),
    sa.Column('promoted_at', TIMESTAMP, nullable=True),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkpoints_deployment_id'), ['deployment_id'], unique=False)

    op.create_table('phase_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('from_phase', sa.String(length=24), nullable=False),
    sa.Column('to_phase', sa.String(length=24), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('phase_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phase_changes_deployment_id'), ['deployment_id'], unique=False)

    op.create_table('steps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('procedure', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=48), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('started_at', TIMESTAMP, nullable=False),
    sa.Column('ended_at', TIMESTAMP, nullable=True),
    sa.Column('duration_ms', FLOAT, nullable=True),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_steps_deployment_id'), ['deployment_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_steps_deployment_id'))

    op.drop_table('steps')
    with op.batch_alter_table('phase_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phase_changes_deployment_id'))

    op.drop_table('phase_changes')
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkpoints_deployment_id'))

    op.drop_table('checkpoints')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index('ix_deployments_cluster')
        batch_op.drop_index(batch_op.f('ix_deployments_batch_id'))

    op.drop_table('deployments')
    op.drop_table('batches')
