"""retention and baseline

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 22:06:36.798572
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('decommissioned_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('baseline', sa.JSON(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_column('baseline')
        batch_op.drop_column('decommissioned_at')
        batch_op.drop_column('retention_until')

