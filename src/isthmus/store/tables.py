"""The store's tables. Portable SQL only: the same schema runs on SQLite and PostgreSQL.

Intent (tenant ARM resources and operator objects) lives in `resources` as JSON documents keyed by
their normalised resource id; everything else is bookkeeping that keeps the documents honest:
one global revision, tombstones for incremental snapshots, unique address allocations, the
reference graph used for in-use checks and back-references. The M+N state the controller decides
(placements, gateway_states) is not intent either, and no API PUT writes it.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

revision = Table(
    "revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("value", BigInteger, nullable=False),
)

resources = Table(
    "resources",
    metadata,
    Column("id", String(512), primary_key=True),  # lower-cased ARM id, or admin/<collection>/<name>
    Column("scope", String(64), nullable=False),  # subscription id, or "admin"
    Column("resource_group", String(96)),  # lower-cased; NULL for admin objects
    Column("type", String(128), nullable=False),  # e.g. Microsoft.Network/virtualNetworks
    Column("name", String(96), nullable=False),
    Column("body", Text, nullable=False),  # the document as stored (JSON)
    Column("etag", String(64), nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_resources_scope_type_group", "scope", "type", "resource_group"),
    Index("ix_resources_revision", "revision"),
)

tombstones = Table(
    "tombstones",
    metadata,
    Column("id", String(512), primary_key=True),
    Column("type", String(128), nullable=False),
    Column("revision", BigInteger, nullable=False, index=True),
)

refs = Table(
    "refs",
    metadata,
    Column("source", String(512), primary_key=True),  # the referring resource (top-level id)
    Column("path", String(256), primary_key=True),  # where in its body, e.g. properties.subnets[0]...
    Column("target", String(512), nullable=False, index=True),  # the referenced id (may be a child id)
)

allocations = Table(
    "allocations",
    metadata,
    Column("space", String(512), primary_key=True),  # "public", or a subnet id for private addresses
    Column("address", String(64), primary_key=True),
    Column("owner", String(512), nullable=False, index=True),  # resource (or child) id holding it
    Column("pool", String(128)),
)

vnis = Table(
    "vnis",
    metadata,
    Column("vni", Integer, primary_key=True),
    Column("owner", String(512), nullable=False, unique=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),  # sha256 of the secret
    Column("kind", String(16), nullable=False),  # subscription | operator | node
    Column("subject", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("scope", String(32)),  # what an operator token may do beyond /admin: NULL, or "all-subscriptions"
    Column("revoked_at", DateTime(timezone=True)),  # NULL while the token is accepted
)

nodes = Table(
    "nodes",
    metadata,
    Column("name", String(96), primary_key=True),
    Column("role", String(16), nullable=False),  # host | mux | gateway
    Column("address", String(64)),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("applied_revision", BigInteger, nullable=False),
    Column("status", Text, nullable=False),  # last status report (JSON)
    # what the node's kernel offers and the datapath it chose, as its last registration said (JSON; {} unknown)
    Column("capabilities", Text, nullable=False, server_default="{}"),
)

resource_status = Table(
    "resource_status",
    metadata,
    Column("resource", String(512), primary_key=True),  # store key of the resource a node reported on
    Column("node", String(96), primary_key=True),
    Column("state", String(16), nullable=False),  # Succeeded | Failed
    Column("message", Text, nullable=False),
)

# What the gateway carrying a connection last observed of it (connectionStatus, byte counters, the reason
# it is down): observed state, never intent. body is the reported JSON.
connection_status = Table(
    "connection_status",
    metadata,
    Column("connection", String(512), primary_key=True),  # store key
    Column("node", String(96), nullable=False),
    Column("status", String(16), nullable=False),  # Unknown | Connecting | Connected | NotConnected
    Column("body", Text, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("scope", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("subject", String(512), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", Text),  # JSON: the node, virtual network gateway, epoch and timings of the step
    Index("ix_events_scope_id", "scope", "id"),
)

operations = Table(
    "operations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("scope", String(64), nullable=False),
    Column("resource", String(512), nullable=False),
    Column("status", String(16), nullable=False),  # InProgress | Succeeded | Failed
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

placements = Table(
    "placements",
    metadata,
    Column("virtual_network_gateway", String(512), primary_key=True),  # its store key
    Column("gateway", String(96), nullable=False),  # the admin gateway object carrying it
    Column("pool", String(96), nullable=False),
    Column("node", String(96), nullable=False),
    Column("kbps", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),  # why it is there
    Column("moved_from", String(96)),  # the gateway it last moved away from
    Column("revision", BigInteger, nullable=False, index=True),
)

gateway_states = Table(
    "gateway_states",
    metadata,
    Column("gateway", String(96), primary_key=True),  # lower-cased admin gateway name
    Column("role", String(16), nullable=False),  # active | standby
    Column("liveness", String(16), nullable=False),  # Up | Failed
    Column("available", Boolean, nullable=False),  # Up and InService when its role was last decided
    Column("epoch", BigInteger, nullable=False, server_default="0"),  # its lease epoch
    Column("revision", BigInteger, nullable=False, index=True),
)

# The routes the site of each BGP connection last advertised, as the gateway carrying it reported them
# (observed state, never intent; store/learned_routes.py). Written only when the set changes, so each write
# is a revision the documents of the VNet's hosts follow; kept across a report that does not know them
# (a new carrier whose session is not up yet) and across a move to another node.
learned_routes = Table(
    "learned_routes",
    metadata,
    Column("connection", String(512), primary_key=True),  # store key
    Column("node", String(96), nullable=False),  # the gateway node that reported them
    Column("prefixes", Text, nullable=False),  # the learned networks, canonical, sorted, space-separated
    Column("routes", Text, nullable=False),  # the routes as reported (JSON: Azure's GatewayRoute fields)
    Column("revision", BigInteger, nullable=False, index=True),
)
