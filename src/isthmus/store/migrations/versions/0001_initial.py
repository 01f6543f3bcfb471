"""Initial schema: intent documents, revision, references, allocations, tokens, nodes, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "revision",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO revision (id, value) VALUES (1, 0)")
    op.create_table(
        "resources",
        sa.Column("id", sa.String(512), primary_key=True),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("resource_group", sa.String(96)),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("name", sa.String(96), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_resources_scope_type_group", "resources", ["scope", "type", "resource_group"])
    op.create_index("ix_resources_revision", "resources", ["revision"])
    op.create_table(
        "tombstones",
        sa.Column("id", sa.String(512), primary_key=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_tombstones_revision", "tombstones", ["revision"])
    op.create_table(
        "refs",
        sa.Column("source", sa.String(512), primary_key=True),
        sa.Column("path", sa.String(256), primary_key=True),
        sa.Column("target", sa.String(512), nullable=False),
    )
    op.create_index("ix_refs_target", "refs", ["target"])
    op.create_table(
        "allocations",
        sa.Column("space", sa.String(512), primary_key=True),
        sa.Column("address", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(512), nullable=False),
        sa.Column("pool", sa.String(128)),
    )
    op.create_index("ix_allocations_owner", "allocations", ["owner"])
    op.create_table(
        "vnis",
        sa.Column("vni", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(512), nullable=False, unique=True),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(96), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("address", sa.String(64)),
        sa.Column("registered_at", TZ, nullable=False),
        sa.Column("last_seen", TZ, nullable=False),
        sa.Column("applied_revision", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
    )
    op.create_table(
        "resource_status",
        sa.Column("resource", sa.String(512), primary_key=True),
        sa.Column("node", sa.String(96), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_events_scope_id", "events", ["scope", "id"])
    op.create_table(
        "operations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "operations",
        "events",
        "resource_status",
        "nodes",
        "tokens",
        "vnis",
        "allocations",
        "refs",
        "tombstones",
        "resources",
        "revision",
    ):
        op.drop_table(table)
