"""metric points

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 22:23:39.135350
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# MySQL-family servers get DOUBLE, not their 4-byte FLOAT (unix seconds would be off by minutes),
# and DATETIME(6), not whole seconds. Before these variants no such store could reach head (0005
# failed there on a TEXT primary key); SQLite and PostgreSQL DDL is unchanged.
FLOAT = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), 'mysql', 'mariadb')


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('metric_points',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('metric', sa.String(length=48), nullable=False),
    sa.Column('ts', FLOAT, nullable=False),
    sa.Column('value', FLOAT, nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('metric_points', schema=None) as batch_op:
        batch_op.create_index('ix_metric_points_dep_metric', ['deployment_id', 'metric', 'ts'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('metric_points', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_points_dep_metric')

    op.drop_table('metric_points')
