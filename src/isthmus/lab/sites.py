"""Remote sites: an on-premises network with its own strongSwan or GRE endpoint, on the lab's internet segment;
or a provider network's router (FRR) on the provider segment, where L3 connections lead.

    br-inet ── eth0 198.51.100.X ── site netns (charon, or the GRE endpoint) ── lan0
    br-prov ── eth0 (link network) ── site netns (FRR: zebra, staticd)         │
                                on-premises host netns ── eth0 (prefix's .10) ──┘

The site's configuration is never isthmus': the caller hands over a swanctl.conf (a test writes it by hand;
`isthmus lab site create --swanctl FILE`), loaded with swanctl into the site's own charon, which runs with
userspace ESP unless the kernel has it; or a GRE site's own settings (`GreEnd`: the VIP, key, checksum,
tunnel address, the prefixes it routes into the tunnel) for its scapy endpoint (lab/gre_site.py), which
shares no code with the gateway's datapath; or a provider router's (`L3End`: its address on the link network,
the gateway's there, the prefixes it routes to it), configured into FRR's staticd. Its PIDs are recorded in
the lab's state; `lab down` stops them and removes the namespaces with the rest of the lab.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from ipaddress import IPv4Network, IPv6Network, ip_interface, ip_network
from pathlib import Path

from isthmus.lab.fabric import RUN_ROOT, SITES_FILE, LabError, LabState, _kill
from isthmus.lab.gre_site import STATS, GreEnd, config_text
from isthmus.lab.topology import TOR_UPLINK
from isthmus.linux.frr import frr_daemon
from isthmus.linux.run import LinuxError, add_netns, delete_netns, ip_batch, list_netns, netns_pids, sysctl
from isthmus.linux.supervisor import Daemon, DaemonError, Supervisor, socket_answers

SITE_CONF = """charon {
  load = random nonce openssl aes sha1 sha2 hmac gmp curve25519 kdf%s kernel-netlink socket-default vici
  install_routes = yes
  plugins {
    vici { socket = unix:///run/charon.vici }
    kernel-libipsec { mtu = 1400 }
  }
}
"""


@dataclass(frozen=True)
class L3End:
    """A provider router's side of an L3 connection's link network."""

    link_address: str  # with its prefix length, e.g. 198.19.1.2/30
    next_hop: str  # the gateway's address on the link, where `routes` go
    routes: tuple[str, ...]  # the VNet's prefixes


@dataclass(frozen=True)
class SiteBgp:
    """A site's own BGP (FRR bgpd beside its zebra): eBGP with the gateway over the GRE tunnel, on the L3 link, or
    through the IPsec tunnel from its LAN address, advertising `networks` (its on-premises prefix and any more)
    and learning the VNet's."""

    asn: int
    peer: str  # the gateway's address: its GRE tunnel address, its address on the link, or its bgpPeeringAddress
    peer_asn: int  # the VNet gateway's ASN
    networks: tuple[str, ...] = ()  # what it advertises besides its on-premises prefix

    def config(self, name: str, own: str, prefix: str, behind_tunnel: bool) -> str:
        """bgpd's configuration, written here by hand: the site does not use the gateway's code. `own`: its
        address for the session (an IPsec site's is its LAN address, reached through the tunnel)."""
        networks = "".join(f"  network {n}\n" for n in (prefix, *self.networks))
        multihop = f" neighbor {self.peer} ebgp-multihop 2\n neighbor {self.peer} update-source {own}\n"
        return (
            f"frr defaults traditional\nhostname {name}\nrouter bgp {self.asn}\n bgp router-id {own}\n"
            " no bgp ebgp-requires-policy\n no bgp network import-check\n bgp graceful-restart\n"
            f" neighbor {self.peer} remote-as {self.peer_asn}\n neighbor {self.peer} timers 10 30\n"
            f" neighbor {self.peer} timers connect 1\n{multihop if behind_tunnel else ''}"
            f" address-family ipv4 unicast\n{networks} exit-address-family\nexit\n"
        )


@dataclass(frozen=True)
class Site:
    name: str
    address: str  # its public address on the internet segment
    prefix: str  # its on-premises network
    netns: str
    host_netns: str  # the on-premises host behind it
    host_address: str
    run_dir: str
    libipsec: bool = True
    gre: GreEnd | None = None  # a GRE site's endpoint
    l3: L3End | None = None  # a provider router's link (neither: an IPsec site)
    bgp: SiteBgp | None = None  # the site's BGP with the gateway (any kind of site)

    @property
    def bgp_dir(self) -> Path:
        """Where its FRR keeps its files (vtysh --vty_socket BGP_DIR/run)."""
        return Path(self.run_dir) / ("" if self.l3 else "frr")

    @property
    def gre_stats(self) -> dict[str, int]:
        """A GRE site's counters: sent, received, wrong_key, bad_checksum."""
        path = Path(self.run_dir) / STATS
        return dict(json.loads(path.read_text())) if path.exists() else {}


def _sites(state: LabState) -> dict[str, Site]:
    path = Path(state.workdir) / SITES_FILE
    if not path.exists():
        return {}
    out = {}
    for name, entry in json.loads(path.read_text()).items():
        end, link, bgp = entry.pop("gre", None), entry.pop("l3", None), entry.pop("bgp", None)
        gre = GreEnd(**{**end, "routes": tuple(end["routes"])}) if end else None
        l3 = L3End(**{**link, "routes": tuple(link["routes"])}) if link else None
        speaker = SiteBgp(**{**bgp, "networks": tuple(bgp["networks"])}) if bgp else None
        out[name] = Site(**entry, gre=gre, l3=l3, bgp=speaker)
    return out


def _save(state: LabState, sites: dict[str, Site]) -> None:
    (Path(state.workdir) / SITES_FILE).write_text(json.dumps({n: asdict(s) for n, s in sorted(sites.items())}))


def kind(site: Site) -> str:
    """ipsec, gre or l3."""
    return "gre" if site.gre else "l3" if site.l3 else "ipsec"


def listing(state: LabState) -> list[Site]:
    return [site for _name, site in sorted(_sites(state).items())]


def create(state: LabState, name: str, address: str, prefix: str, swanctl_conf: str | None = None, *,
           libipsec: bool = True, gre: GreEnd | None = None, l3: L3End | None = None,
           bgp: SiteBgp | None = None) -> Site:  # fmt: skip
    """Build site `name` and load `swanctl_conf` into its charon, or run its GRE endpoint (`gre`), or make it a
    provider router on the provider segment (`l3`; `address` is then its address on the link); any site may
    speak BGP with the gateway (`bgp`); LabError (and nothing left) on bad input."""
    if [swanctl_conf, gre, l3].count(None) != 2:
        raise LabError(f"site {name}: give one of a swanctl.conf (IPsec), GRE settings or an L3 link")
    if bgp is not None and gre is not None and not gre.tunnel_address:
        raise LabError(f"site {name}: BGP over GRE needs the site's tunnel address")
    if not name.isalnum() or len(name) > 8:
        raise LabError(f"site name {name!r}: up to 8 letters and digits")
    if name in _sites(state):
        raise LabError(f"site {name} exists: delete it first (`isthmus lab site delete {name}`)")
    try:
        public = ip_interface(l3.link_address if l3 else f"{address}/24")
        network = ip_network(prefix)
    except ValueError as error:
        raise LabError(f"site {name}: {error}") from None
    if l3 is not None:
        if not public.network.subnet_of(ip_network("198.19.0.0/17")):  # type: ignore[arg-type]
            raise LabError(f"site {name}: a link network is inside 198.19.0.0/17")
    elif public.network != ip_network("198.51.100.0/24") or str(public.ip) in (TOR_UPLINK, "198.51.100.10"):
        raise LabError(f"site {name}: its address must be a free one of the internet segment 198.51.100.0/24")
    if network.num_addresses < 16:
        raise LabError(f"site {name}: {prefix} is too small for a router and a host")
    topology = state.topology
    netns = topology.netns(f"site-{name}")
    host = str(network.network_address + 10)
    site = Site(name, str(public.ip), str(network), netns, f"{netns}-h", host, str(RUN_ROOT / netns), libipsec, gre,
                l3, bgp)  # fmt: skip
    try:
        _build(state, site, network)
        for i, daemon in enumerate(_endpoints(site)):
            supervisor = Supervisor(daemon)
            supervisor.ensure()
            assert supervisor.pid is not None
            state.record(f"site-{name}" + (f"-{i}" if i else ""), supervisor.pid)
            state.save()
        if swanctl_conf is not None:
            load(site, swanctl_conf)
    except (LinuxError, DaemonError, LabError) as error:
        _remove(state, site)
        raise LabError(f"site {name}: {error}") from None
    sites = _sites(state)
    sites[name] = site
    _save(state, sites)
    return site


def load(site: Site, swanctl_conf: str) -> None:
    """(Re)load the site's whole configuration from `swanctl_conf`."""
    path = Path(site.run_dir) / "swanctl.conf"
    path.write_text(swanctl_conf)
    path.chmod(0o600)
    done = subprocess.run(
        ["swanctl", "--load-all", "--noprompt", "--clear", "--file", str(path), "--uri", f"unix://{site.run_dir}/charon.vici"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise LabError(f"swanctl refused the configuration: {(done.stderr or done.stdout).strip()[-500:]}")


def swanctl(site: Site, *args: str, timeout: float = 30.0) -> str:
    """Run swanctl against the site's charon (e.g. --list-sas, --initiate --child NAME)."""
    done = subprocess.run(["swanctl", *args, "--uri", f"unix://{site.run_dir}/charon.vici"], capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip
    return done.stdout + done.stderr


def delete(state: LabState, name: str) -> None:
    sites = _sites(state)
    site = sites.pop(name, None)
    if site is None:
        raise LabError(f"no site {name} in the lab at {state.workdir}")
    _remove(state, site)
    _save(state, sites)


def _build(state: LabState, site: Site, network: IPv4Network | IPv6Network) -> None:
    fabric = state.topology.netns("fabric")
    router = str(network.network_address + 1)
    length = network.prefixlen
    existing = list_netns()
    for netns in (site.netns, site.host_netns):
        if netns in existing:
            raise LabError(f"namespace {netns} exists")
        add_netns(netns)
    sysctl(site.netns, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"})
    outside = f"i-s{site.name}"[:15]
    bridge, address = ("br-prov", site.l3.link_address) if site.l3 else ("br-inet", f"{site.address}/24")
    ip_batch(fabric, [f"link add {outside} type veth peer name eth0 netns {site.netns}",
                      f"link set {outside} master {bridge} up"])  # fmt: skip
    ip_batch(site.netns, [f"addr add {address} dev eth0", "link set eth0 up", "link set lo up",
                          *([] if site.l3 else [f"route add default via {TOR_UPLINK}"]),
                          f"link add lan0 type veth peer name eth0 netns {site.host_netns}",
                          f"addr add {router}/{length} dev lan0", "link set lan0 up"])  # fmt: skip
    ip_batch(site.host_netns, [f"addr add {site.host_address}/{length} dev eth0", "link set eth0 up",
                               "link set lo up", f"route add default via {router}"])  # fmt: skip


def _endpoints(site: Site) -> list[Daemon]:
    """The site's charon; or its GRE endpoint (and for BGP an FRR of its own: zebra, bgpd); or its FRR (zebra,
    staticd, and for BGP bgpd)."""
    run = Path(site.run_dir)
    if site.gre is not None:
        endpoint = Daemon("gre-site", (sys.executable, "-m", "isthmus.lab.gre_site", str(run / "site.json")), run,
                          site.netns, configs={"site.json": config_text(site.address, site.gre)}, stale=(run / STATS,),
                          probe=lambda: (run / STATS).exists())  # fmt: skip
        return [endpoint, *_zebra(site), *_bgpd(site)]
    if site.l3 is not None:
        routes = "".join(f"ip route {prefix} {site.l3.next_hop}\n" for prefix in site.l3.routes)
        return [frr_daemon(site.netns, run, "zebra", f"hostname {site.name}\n"),
                frr_daemon(site.netns, run, "staticd", f"hostname {site.name}\n{routes}"), *_bgpd(site)]  # fmt: skip
    return [Daemon(
        "charon", ("/usr/lib/ipsec/charon",), run, site.netns,
        configs={"strongswan.conf": SITE_CONF % (" kernel-libipsec" if site.libipsec else "")},
        env={"STRONGSWAN_CONF": "/run/strongswan.conf"}, private_run=True,
        stale=(run / "charon.vici", run / "charon.pid"), probe=lambda: socket_answers(run / "charon.vici"),
    ), *_zebra(site), *_bgpd(site)]  # fmt: skip


def _zebra(site: Site) -> list[Daemon]:
    """A GRE or IPsec site's zebra, for its bgpd (an L3 site runs one anyway)."""
    return [frr_daemon(site.netns, site.bgp_dir, "zebra", f"hostname {site.name}\n")] if site.bgp else []


def _bgpd(site: Site) -> list[Daemon]:
    if site.bgp is None:
        return []
    own = site.gre.tunnel_address if site.gre else site.l3.link_address if site.l3 else None
    address = own.split("/")[0] if own else str(ip_network(site.prefix).network_address + 1)  # its LAN's router
    config = site.bgp.config(site.name, address, site.prefix, behind_tunnel=own is None)
    return [frr_daemon(site.netns, site.bgp_dir, "bgpd", config)]


def _remove(state: LabState, site: Site) -> None:
    if site.run_dir:
        for i, daemon in reversed(list(enumerate(_endpoints(site)))):
            Supervisor(daemon).stop()  # by its record, if it started
            state.pids.pop(f"site-{site.name}" + (f"-{i}" if i else ""), None)
    state.save()
    existing = list_netns()
    for netns in (site.netns, site.host_netns):
        if netns in existing:
            for pid in netns_pids(netns):
                _kill(pid)
            delete_netns(netns)
