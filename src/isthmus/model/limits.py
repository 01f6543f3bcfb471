"""The limits the controller enforces, in one place: Azure's published networking limits where Azure has
them, and isthmus's own where it does not (each says which).

Azure's figures are those of "Networking limits - Azure Resource Manager" (per VNet, per NSG, per rule).
"""

from __future__ import annotations

# --- Azure's published limits -----------------------------------------------------------------------
SUBNETS_PER_VNET = 3_000
DNS_SERVERS_PER_VNET = 20
IP_CONFIGURATIONS_PER_NIC = 256  # "Private IP addresses per network interface"
RULES_PER_NSG = 1_000
# "IP addresses and ranges specified for source or destination in a security group", counted separately
# for sources and destinations over all of one NSG's rules.
PREFIXES_PER_NSG_SIDE = 4_000
TAGS_PER_RESOURCE = 50
TAG_NAME_LENGTH = 512
TAG_VALUE_LENGTH = 256
# Azure Resource Manager refuses request bodies over 4 MB.
REQUEST_BODY_BYTES = 4 * 1024 * 1024

# --- isthmus's own (Azure publishes no figure) -------------------------------------------------------
ADDRESS_PREFIXES_PER_VNET = 500
ADDRESS_PREFIXES_PER_SUBNET = 32
PORT_RANGES_PER_RULE = 400
REQUEST_HEAD_BYTES = 32 * 1024  # request line and headers together
REQUEST_URL_BYTES = 8 * 1024
REQUEST_HEADER_COUNT = 100
REQUEST_HEAD_SECONDS = 5.0  # from a connection (or its previous response) to the end of the headers
REQUEST_BODY_SECONDS = 30.0  # from the end of the headers to the end of the body
TLS_HANDSHAKE_SECONDS = 5.0
TLS_SHUTDOWN_SECONDS = 2.0  # a closing connection waits this long for the client's close_notify
# A node's status report (POST /v1/nodes/NODE/status): it speaks only of what the node carries, and its
# free-form parts are bounded so /admin/nodes serves no megabytes a node chose to upload.
REPORT_RESOURCES = 10_000  # resources named in one report (besides: each must be one the node carries)
REPORT_RESOURCE_ID_LENGTH = 1_024
REPORT_DAEMONS = 64
REPORT_TUNNELS = 16  # tunnels (child SAs) reported of one connection
REPORT_DAEMON_TEXT_LENGTH = 256  # a daemon's name, and its state
REPORT_DETAILS_BYTES = 64 * 1024  # `details` as compact JSON
REPORT_BGP_SESSIONS = 64  # a MUX's BGP sessions (a MUX with more reports the first, by address)
REPORT_BGP_PEER_LENGTH = 64  # a session's key: its peer's address
REPORT_BGP_STATE_LENGTH = 32  # a session's state ("Established")
# A node's registration: its kernel's capabilities and the datapath chosen from them.
KERNEL_RELEASE_LENGTH = 128  # uname -r
DATAPATH_FUNCTIONS = 16
DATAPATH_WORD_LENGTH = 32  # a function's name, and its implementation's

LIVE_SECONDS = 15.0  # a node that has not reported for this long no longer holds resources in Updating
TRAFFIC_SELECTOR_POLICIES = 16  # trafficSelectorPolicies of one connection
TRAFFIC_SELECTOR_RANGES = 16  # address ranges on each side of one traffic selector policy
SHARED_KEY_LENGTH = 128  # Azure: a connection's pre-shared key is at most 128 characters
# Routes a gateway learns over BGP from one connection's site: Azure Stack Hub's figure (its "BGP routes
# per connection"). The gateway installs and reports at most this many; the excess is dropped and counted.
BGP_LEARNED_ROUTES = 150
# What a gateway reports it advertises to one site: the VNet's address space (at most ADDRESS_PREFIXES_PER_VNET)
# and what it passes on from its other sites.
BGP_ADVERTISED_ROUTES = 1_000
