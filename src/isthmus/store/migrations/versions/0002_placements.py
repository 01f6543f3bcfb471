"""Sticky M+N placement: the stored assignment of virtual network gateways, and gateway roles and liveness.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "placements",
        sa.Column("virtual_network_gateway", sa.String(512), primary_key=True),
        sa.Column("gateway", sa.String(96), nullable=False),
        sa.Column("pool", sa.String(96), nullable=False),
        sa.Column("node", sa.String(96), nullable=False),
        sa.Column("kbps", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("moved_from", sa.String(96)),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_placements_revision", "placements", ["revision"])
    op.create_table(
        "gateway_states",
        sa.Column("gateway", sa.String(96), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("liveness", sa.String(16), nullable=False),
        sa.Column("available", sa.Boolean, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_gateway_states_revision", "gateway_states", ["revision"])


def downgrade() -> None:
    op.drop_table("gateway_states")
    op.drop_table("placements")
