"""Learned routes: what each BGP connection's site last advertised (observed state, apart from intent).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "learned_routes",
        sa.Column("connection", sa.String(512), primary_key=True),
        sa.Column("node", sa.String(96), nullable=False),
        sa.Column("prefixes", sa.Text, nullable=False),
        sa.Column("routes", sa.Text, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_learned_routes_revision", "learned_routes", ["revision"])


def downgrade() -> None:
    op.drop_index("ix_learned_routes_revision", table_name="learned_routes")
    op.drop_table("learned_routes")
