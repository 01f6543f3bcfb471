"""Gateway leases: each gateway state holds the epoch of its lease (liveness Up | Failed); events carry
details (node, virtual network gateway, timings) so a failover reads as one story.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_states") as batch:
        batch.add_column(sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"))
    op.execute("UPDATE gateway_states SET liveness = 'Failed' WHERE liveness = 'Down'")
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("details", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("details")
    op.execute("UPDATE gateway_states SET liveness = 'Down' WHERE liveness = 'Failed'")
    with op.batch_alter_table("gateway_states") as batch:
        batch.drop_column("epoch")
