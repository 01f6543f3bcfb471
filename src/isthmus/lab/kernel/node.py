"""A lab node as a qemu guest on Debian's kernel (the real-kernel tier): its NICs are taps in the fabric's
bridges (eth0 on the underlay, eth1 on management, the addresses a namespace node has), its agent runs inside
with the same command line as on a namespace node, and the lab reaches into it through its share folder:

    host:  share/exec/ID.sh          ─► guest: runs it (in the background) ─► share/exec/ID.out, ID.rc
    run_in(share, "ip -br link")     # GuestRun(exit_code, output), or GuestError after the timeout

so lab code that would use `ip netns exec` on a namespace node (a VM's namespace is inside the guest) asks the
guest instead. The guest serves requests until the lab stops it (or share/stop appears)."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from isthmus.lab.kernel.guest import GUEST_SHARE, Guest, GuestError, Tap, boot_guest
from isthmus.lab.topology import PROVIDER_DEVICE, TOR_UNDERLAY, UNDERLAY_MTU, UNDERLAY_PREFIXLEN, Node
from isthmus.linux import capabilities

EXEC_DIR = "exec"
NET_UP = "net-up"  # written once the guest's NICs are configured
AGENT_LOG = "agent.log"
STOP = "stop"
MEMORY_MB = 512
# What a host or MUX agent uses and what its capability probe tries, loaded in one modprobe (on-demand loading
# costs a process per module under TCG; the probe's own modprobe finds loaded those it tries).
MODULES: tuple[str, ...] = tuple(dict.fromkeys((*capabilities.MODULES, "bridge", "nf_conntrack", "nf_nat")))
MODULES += ("nft_chain_nat", "nft_ct", "nft_nat", "nft_masq", "nft_reject_inet", "nft_fib_inet", "nft_limit")
MODULES += ("sch_htb", "ifb")
# A gateway's first ESP SA (AES-GCM, Azure's default) instantiates rfc4106(gcm(aes)) and its IV generator: the
# kernel would otherwise request each module in turn, a modprobe process apiece.
MODULES += ("gcm", "ctr", "ghash_generic", "seqiv", "drbg", "jitterentropy_rng")

_SERVE = f"""mkdir -p {EXEC_DIR}
while [ ! -e {STOP} ]; do
  for request in {EXEC_DIR}/*.sh; do
    [ -e "$request" ] || continue
    id=${{request%.sh}}
    mv "$request" "$id.run"
    ( bash "$id.run" > "$id.out" 2>&1 < /dev/null; echo $? > "$id.rc.partial"; mv "$id.rc.partial" "$id.rc" ) &
  done
  sleep 0.05
done
"""


@dataclass(frozen=True)
class GuestRun:
    exit_code: int
    output: str


def taps(node: Node, fabric_netns: str) -> list[Tap]:
    """eth0 on the underlay bridge (jumbo, as a namespace node's under0), eth1 on the management bridge; a
    gateway's eth2 on the provider network (its prov0)."""
    out = [
        Tap(f"u-{node.name}", "br-under", fabric_netns, mtu=UNDERLAY_MTU),
        Tap(f"m-{node.name}", "br-mgmt", fabric_netns),
    ]
    if node.role == "gateway":
        out.append(Tap(f"p-{node.name}", "br-prov", fabric_netns))
    return out


def guest_script(node: Node, sysctls: Mapping[str, str], agent: Sequence[str] | None) -> str:
    """The node's network as a namespace node has it, then its agent (if it has one), the modules and the
    request loop. Few processes (each costs ~0.05-0.2 s under TCG): the sysctls are bash's writes to /proc/sys
    and the network one `ip -batch`. The agent starts before the modprobe, whose reads over 9p leave the vCPU
    idle ~0.5 s that the agent's imports use; its probe loads what it tries itself, and by its first pass the
    rest is loaded (the kernel would load a module still missing on demand)."""
    network = [
        f"link set eth0 mtu {UNDERLAY_MTU} up",
        f"addr add {node.underlay}/{UNDERLAY_PREFIXLEN} dev eth0",
        "link set eth1 up",
        f"addr add {node.management}/24 dev eth1",
        f"route add default via {TOR_UNDERLAY}",
    ]
    if node.role == "gateway":
        network += [f"link set eth2 name {PROVIDER_DEVICE}", f"link set {PROVIDER_DEVICE} up"]
    lines = [
        *(f"echo {shlex.quote(value)} > /proc/sys/{key.replace('.', '/')}" for key, value in sysctls.items()),
        "ip -batch - <<'EOF'",
        *network,
        "EOF",
        f": > {NET_UP}",
    ]
    if agent is not None:
        lines.append(f"{shlex.join(agent)} >> {AGENT_LOG} 2>&1 < /dev/null &")
    lines.append(f"modprobe -q -a {' '.join(MODULES)}")
    return "\n".join(lines) + "\n" + _SERVE


def boot_node(
    node: Node,
    workdir: Path,
    fabric_netns: str,
    sysctls: Mapping[str, str],
    agent: Sequence[str] | None,
    env: Mapping[str, str] | None = None,
) -> Guest:
    return boot_guest(
        node.name,
        workdir,
        script=guest_script(node, sysctls, agent),
        taps=taps(node, fabric_netns),
        memory=MEMORY_MB,
        env=env,
    )


def run_in(share: Path, script: str, timeout: float = 30.0) -> GuestRun:
    """Run bash `script` inside the guest serving `share`; its exit code and output (stdout and stderr)."""
    requests = share / EXEC_DIR
    if not requests.is_dir():
        raise GuestError(f"the guest of {share} does not serve requests (no {requests})")
    ident = f"{time.monotonic_ns():x}-{os.urandom(3).hex()}"
    partial = requests / f"{ident}.partial"
    partial.write_text(f"cd {GUEST_SHARE}\n{script}\n")
    partial.rename(requests / f"{ident}.sh")  # whole, or not there: the guest never runs half a script
    code = requests / f"{ident}.rc"
    deadline = time.monotonic() + timeout
    while not code.exists():
        if time.monotonic() > deadline:
            raise GuestError(f"the guest of {share} did not finish a request within {timeout:.0f} s: {script[:200]}")
        time.sleep(0.02)
    result = GuestRun(int(code.read_text().strip() or "255"), (requests / f"{ident}.out").read_text(errors="replace"))
    for suffix in ("sh", "run", "out", "rc"):
        (requests / f"{ident}.{suffix}").unlink(missing_ok=True)
    return result
