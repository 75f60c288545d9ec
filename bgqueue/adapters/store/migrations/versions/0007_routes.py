"""routes: each cluster's writer endpoint, durable (Redis holds the published copy)

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('routes',
    sa.Column('namespace', sa.String(length=32), nullable=False),
    sa.Column('cluster', sa.String(length=64), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('endpoints', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('namespace', 'cluster')
    )


def downgrade() -> None:
    op.drop_table('routes')
