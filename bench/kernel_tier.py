"""Benchmark of the lab's real-kernel tier: qemu guests (TCG, one vCPU, -m 512) on Debian's stock kernel, the
host's / shared read-only under an overlay (needs root, qemu and the kernel scripts/bootstrap prepares).

  - qemu start -> the guest's script runs                         (vm_boot_to_script_s: median of the boots)
  - qemu start -> the capability probe's answer in the share folder (vm_boot_to_probe_s; a Python start, a
    modprobe and the trials, inside the guest)
  - a lab whose one host is a kernel node: qemu start -> its agent registered with the controller
    (vm_boot_to_agent_s; target <= 20)
  - qemu's resident memory while the guest is busy                  (vm_rss_mb: the largest sample)
  - two charons in namespaces inside one guest, kernel-netlink: qemu start -> CHILD_SA established
    (ipsec_boot_to_established_s), iperf3 through the kernel's ESP between them (kernel_esp_mbps) and over the
    bare veth (guest_veth_mbps): an emulated CPU, so a floor, not what a kernel node does on hardware
  - iperf3 over VXLAN (VNI 5001, UDP 4789), one TCP stream: between two host namespaces joined by a veth
    (vxlan_gbps_ns_to_ns, the host's kernel at full speed) and from that same ESP guest, through its tap on a
    bridge in a host namespace, to a VXLAN device on that bridge (vxlan_gbps_vm_to_ns); their ratio is what a
    kernel node costs a VXLAN underlay against a namespace node
Prints a table, then one JSON object as the last line. `--quick`: 1 boot, 3 s of iperf3 (45-50 s, ~20 s of it
the lab with a kernel node; ~60 s while other work keeps a core busy).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import isthmus
from isthmus.lab import fabric
from isthmus.lab.kernel.guest import Guest, Tap, boot_guest
from isthmus.lab.topology import Topology
from isthmus.linux.capabilities import Capabilities
from isthmus.linux.run import add_netns, delete_netns, in_netns, ip_batch, run

GUEST_LIB = Path(__file__).resolve().parents[1] / "tests" / "kernel" / "guest_lib.sh"
ENV = {"ISTHMUS_PYTHON": sys.executable, "PYTHONPATH": str(Path(isthmus.__file__).resolve().parents[1])}

PROBE = """
"$ISTHMUS_PYTHON" -m isthmus.linux.capabilities > capabilities.partial
mv capabilities.partial capabilities.json
"""

ESP = """
ipsec_pair > ipsec.log 2>&1 || exit 1
touch established
ip netns exec ipsec-b iperf3 -s -D -B 192.0.2.65
ip netns exec ipsec-b iperf3 -s -D -B 198.51.100.2 -p 5202
sleep 0.5
ip netns exec ipsec-a iperf3 -c 192.0.2.65 -B 192.0.2.1 -t {seconds} -J > esp.json
ip netns exec ipsec-a iperf3 -c 198.51.100.2 -p 5202 -t {seconds} -J > veth.json
ip -n ipsec-a -s xfrm state > states.txt
ipsec_stop
ip addr add {guest_underlay}/24 dev eth0 && ip link set eth0 up &&
  ip link add vxlan0 type vxlan id {vni} local {guest_underlay} remote {host_underlay} dstport {port} dev eth0 &&
  ip addr add {guest_overlay}/24 dev vxlan0 && ip link set vxlan0 up || exit 1
ping -c 1 -w 20 {host_overlay} > vxlan-ping.txt || exit 1
iperf3 -c {host_overlay} -t {seconds} -J > vxlan.json
"""

VNI, VXLAN_PORT, IPERF_PORT = 5001, 4789, 5201
TAG = f"ikb{os.getpid() % 100000}"  # this run's namespaces and taps


class RssSampler(threading.Thread):
    """The largest VmRSS of a process, sampled every 0.2 s until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.largest_mb = 0.0

    def run(self) -> None:
        while True:
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    self.largest_mb = max(self.largest_mb, int(line.split()[1]) / 1024)
            time.sleep(0.2)


def since_start(guest: Guest) -> float:
    return time.monotonic() - guest.started


def boot_and_probe(workdir: Path) -> dict[str, float | bool]:
    with boot_guest("bench-probe", workdir, script=PROBE, env=ENV) as guest:
        rss = RssSampler(guest.pid)
        rss.start()
        to_script = guest.wait_up(timeout=120)
        guest.wait_for_file("capabilities.json", timeout=120)
        to_probe = since_start(guest)
        result = guest.wait(timeout=60)
        rss.join(timeout=5)
    if result.exit_code != 0:
        raise SystemExit(f"the probe failed in the guest:\n{result.output}")
    found = Capabilities.from_json(json.loads((guest.share / "capabilities.json").read_text()))
    every = all(value for name, value in found.to_json().items() if name != "kernel")
    return {"to_script": to_script, "to_probe": to_probe, "rss_mb": rss.largest_mb, "all": every}


def bits_per_second(iperf_json: str) -> float:
    return float(json.loads(iperf_json)["end"]["sum_received"]["bits_per_second"])


def mbps(path: Path) -> float:
    return round(bits_per_second(path.read_text()) / 1e6, 1)


def vxlan_lines(device: str, local: str, remote: str, overlay: str) -> list[str]:
    """iproute2 lines: `local`/24 on the underlay `device`, a VXLAN to `remote` over it with `overlay`/24."""
    return [
        f"addr add {local}/24 dev {device}",
        f"link set {device} up",
        f"link add vxlan0 type vxlan id {VNI} local {local} remote {remote} dstport {VXLAN_PORT} dev {device}",
        f"addr add {overlay}/24 dev vxlan0",
        "link set vxlan0 up",
    ]


@contextlib.contextmanager
def namespaces(*names: str) -> Iterator[None]:
    """Host namespaces `names`, deleted afterwards (those this created, by name)."""
    made: list[str] = []
    try:
        for name in names:
            add_netns(name)
            made.append(name)
        yield
    finally:
        for name in made:
            delete_netns(name)


@contextlib.contextmanager
def iperf_server(netns: str, address: str) -> Iterator[subprocess.Popen[bytes]]:
    """A one-test iperf3 server in `netns` on `address`, listening when this yields; ended by its PID after."""
    server = subprocess.Popen(
        in_netns(netns, ["iperf3", "-s", "-1", "-B", address, "-p", str(IPERF_PORT)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while f":{IPERF_PORT}" not in run(in_netns(netns, ["ss", "-Hltn", f"sport = :{IPERF_PORT}"]), check=False):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"iperf3 -s did not start in {netns}")
            time.sleep(0.05)
        yield server
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def vxlan_ns_to_ns(seconds: int) -> float:
    """Gbit/s of one TCP stream over VXLAN between two host namespaces joined by a veth."""
    a, b = f"{TAG}-vxa", f"{TAG}-vxb"
    with namespaces(a, b):
        run(["ip", "link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", b])
        ip_batch(a, vxlan_lines("eth0", "198.18.1.1", "198.18.1.2", "100.64.0.1"))
        ip_batch(b, vxlan_lines("eth0", "198.18.1.2", "198.18.1.1", "100.64.0.2"))
        with iperf_server(b, "100.64.0.2"):
            client = ["iperf3", "-c", "100.64.0.2", "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]
            out = subprocess.run(in_netns(a, client), capture_output=True, text=True, timeout=seconds + 30, check=True)
    return round(bits_per_second(out.stdout) / 1e9, 2)


def esp(workdir: Path, seconds: int) -> dict[str, float]:
    """The ESP guest; after ESP, its VXLAN through its tap to a VXLAN in a host namespace (iperf3 server)."""
    bridge_ns = f"{TAG}-vxbr"
    addresses = {"guest_underlay": "198.18.2.2", "host_underlay": "198.18.2.1"}
    addresses |= {"guest_overlay": "100.64.1.2", "host_overlay": "100.64.1.1"}
    script = GUEST_LIB.read_text() + ESP.format(seconds=seconds, vni=VNI, port=VXLAN_PORT, **addresses)
    with namespaces(bridge_ns):
        ip_batch(bridge_ns, ["link add br0 type bridge"])
        ip_batch(bridge_ns, vxlan_lines("br0", addresses["host_underlay"], addresses["guest_underlay"], "100.64.1.1"))
        tap = Tap(f"{TAG}-vxt", "br0", bridge_ns)
        with (
            iperf_server(bridge_ns, addresses["host_overlay"]),
            boot_guest("bench-esp", workdir, script=script, taps=[tap], env=ENV) as guest,
        ):
            rss = RssSampler(guest.pid)
            rss.start()
            guest.wait_for_file("established", timeout=180)
            established = since_start(guest)
            result = guest.wait(timeout=120 + 3 * seconds)
            rss.join(timeout=5)
    if result.exit_code != 0:
        log = (guest.share / "ipsec.log").read_text(errors="replace") if (guest.share / "ipsec.log").exists() else ""
        raise SystemExit(f"the ESP/VXLAN run failed in the guest:\n{result.output}\n{log[-3000:]}")
    return {
        "established": established,
        "esp_mbps": mbps(guest.share / "esp.json"),
        "veth_mbps": mbps(guest.share / "veth.json"),
        "vxlan_gbps": round(bits_per_second((guest.share / "vxlan.json").read_text()) / 1e9, 3),
        "rss_mb": rss.largest_mb,
    }


def boot_to_agent(workdir: Path) -> float:
    """A lab with its one host as a kernel node: qemu start (its process's start time) -> the host agent inside
    registered with the controller (the store's registeredAt), both on the wall clock."""
    prefix = f"{TAG}l-"
    try:
        state = fabric.up(workdir, Topology(prefix, hosts=1, muxes=1, gateways=0), kernel_nodes=["h1"])
        with state.operator() as http:
            nodes = {n["name"]: n for n in http.get("/admin/nodes").json()["value"]}
        registered = datetime.fromisoformat(nodes["h1"]["registeredAt"]).timestamp()
        started = boot_time() + state.started["vm-h1"] / os.sysconf("SC_CLK_TCK")
    finally:
        fabric.down(workdir, prefix)
    return registered - started


def boot_time() -> float:
    """This machine's boot, on the wall clock (/proc/stat btime)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise SystemExit("no btime in /proc/stat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    boots, seconds = (1, 3) if args.quick else (5, 10)
    with tempfile.TemporaryDirectory(prefix="isthmus-kernel-bench-") as scratch:
        runs = [boot_and_probe(Path(scratch) / f"probe{n}") for n in range(boots)]
        ipsec = esp(Path(scratch) / "esp", seconds)
        to_agent = boot_to_agent(Path(scratch) / "lab")
    vxlan_ns = vxlan_ns_to_ns(seconds)
    to_script = [float(r["to_script"]) for r in runs]
    to_probe = [float(r["to_probe"]) for r in runs]
    f: dict[str, object] = {
        "boots": boots,
        "vm_boot_to_script_s": round(statistics.median(to_script), 2),
        "vm_boot_to_script_s_max": round(max(to_script), 2),
        "vm_boot_to_probe_s": round(statistics.median(to_probe), 2),
        "vm_boot_to_agent_s": round(to_agent, 2),
        "vm_probe_all_capabilities": all(bool(r["all"]) for r in runs),
        "vm_rss_mb": round(max(max(float(r["rss_mb"]) for r in runs), ipsec["rss_mb"]), 1),
        "ipsec_boot_to_established_s": round(ipsec["established"], 2),
        "kernel_esp_mbps": ipsec["esp_mbps"],
        "guest_veth_mbps": ipsec["veth_mbps"],
        "vxlan_gbps_vm_to_ns": ipsec["vxlan_gbps"],
        "vxlan_gbps_ns_to_ns": vxlan_ns,
    }
    ratio = ipsec["vxlan_gbps"] / vxlan_ns if vxlan_ns else 0.0
    rows = [
        ("qemu start -> guest script runs (median / max)",
         f"{f['vm_boot_to_script_s']} / {f['vm_boot_to_script_s_max']} s", "4-6.5 s (probe)"),
        ("qemu start -> capability probe answered", f"{f['vm_boot_to_probe_s']} s", "-"),
        ("qemu start -> lab kernel node's agent registered", f"{f['vm_boot_to_agent_s']} s", "<= 20 s"),
        ("every capability in the guest", str(f["vm_probe_all_capabilities"]), "True"),
        ("qemu RSS, -m 512 (largest sample)", f"{f['vm_rss_mb']} MB", "360-400 MB (probe)"),
        ("qemu start -> two charons' CHILD_SA established", f"{f['ipsec_boot_to_established_s']} s", "-"),
        ("kernel ESP between namespaces in the guest (TCG)", f"{f['kernel_esp_mbps']} Mbit/s", "reference"),
        ("  the bare veth, same guest", f"{f['guest_veth_mbps']} Mbit/s", "baseline"),
        ("VXLAN, guest (tap, bridge) -> host namespace", f"{f['vxlan_gbps_vm_to_ns']} Gbit/s", "reference"),
        ("VXLAN, host namespace -> host namespace (veth)", f"{f['vxlan_gbps_ns_to_ns']} Gbit/s", "baseline"),
        ("  ratio vm/ns", f"{ratio:.3f}", "TCG: a floor"),
    ]  # fmt: skip
    print(f"\nisthmus real-kernel tier: qemu guests on Debian's kernel, TCG{' --quick' if args.quick else ''}")
    for name, value, goal in rows:
        print(f"{name:<50} {value:>20}  {goal}")
    print(json.dumps(f))


if __name__ == "__main__":
    main()
