"""Asking for kernel nodes: names that are not the lab's, or a machine without qemu or the guest kernel, are
refused before anything starts; the guest script gives the node a namespace node's network."""

from __future__ import annotations

import pytest

from isthmus.lab import fabric
from isthmus.lab.kernel import image
from isthmus.lab.kernel.node import EXEC_DIR, MODULES, NET_UP, guest_script, taps
from isthmus.lab.topology import Topology

TOPOLOGY = Topology("ut-", hosts=2, muxes=1, gateways=1)


def test_unknown_node_names_are_refused_with_the_lab_s_names() -> None:
    with pytest.raises(fabric.LabError, match=r"--kernel-nodes names h9, not nodes of this lab \(gw1, h1, h2, mux1\)"):
        fabric.check_kernel_nodes(TOPOLOGY, ["h2", "h9"])


def test_no_qemu_names_the_bootstrap_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fabric.shutil, "which", lambda name: None)
    with pytest.raises(fabric.LabError, match=r"need qemu-system-x86_64, which is not installed: run .*bootstrap"):
        fabric.check_kernel_nodes(TOPOLOGY, ["h2"])


def test_no_guest_kernel_names_the_bootstrap_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fabric.shutil, "which", lambda name: f"/usr/bin/{name}")

    def missing() -> image.KernelImage:
        raise image.KernelMissing(f"no guest kernel under var/kernel: run {image.BOOTSTRAP_STEP}")

    monkeypatch.setattr(image, "find", missing)
    with pytest.raises(fabric.LabError, match=r"kernel nodes need the guest kernel: no guest kernel .*bootstrap"):
        fabric.check_kernel_nodes(TOPOLOGY, ["h2"])


def test_no_kernel_nodes_needs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fabric.shutil, "which", lambda name: None)
    fabric.check_kernel_nodes(TOPOLOGY, [])


def test_the_guest_script_gives_the_node_its_addresses_then_its_agent_then_serves_requests() -> None:
    h2 = next(n for n in TOPOLOGY.nodes() if n.name == "h2")
    script = guest_script(h2, {"net.ipv4.ip_forward": "1"}, ["python", "-m", "isthmus", "agent", "host"])
    lines = script.splitlines()
    order = [
        "echo 1 > /proc/sys/net/ipv4/ip_forward",
        "ip -batch - <<'EOF'",
        "link set eth0 mtu 9000 up",
        f"addr add {h2.underlay}/24 dev eth0",
        f"addr add {h2.management}/24 dev eth1",
        "route add default via 198.18.0.1",
        "EOF",
        f": > {NET_UP}",
        "python -m isthmus agent host >> agent.log 2>&1 < /dev/null &",
        f"modprobe -q -a {' '.join(MODULES)}",
        f"mkdir -p {EXEC_DIR}",
    ]
    assert [lines.index(line) for line in order] == sorted(lines.index(line) for line in order)
    assert "agent" not in guest_script(h2, {}, None)
    assert [(t.ifname, t.bridge, t.mtu) for t in taps(h2, "ut-fabric")] == [
        ("u-h2", "br-under", 9000),
        ("m-h2", "br-mgmt", None),
    ]
