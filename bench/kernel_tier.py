"""Benchmark of the lab's real-kernel tier: qemu guests (TCG, one vCPU, -m 512) on Debian's stock kernel, the
host's / shared read-only under an overlay (needs root, qemu and the kernel scripts/bootstrap prepares).

  - qemu start -> the guest's script runs                         (vm_boot_to_script_s: median of the boots)
  - qemu start -> the capability probe's answer in the share folder (vm_boot_to_probe_s; a Python start, a
    modprobe and the trials, inside the guest)
  - qemu's resident memory while the guest is busy                  (vm_rss_mb: the largest sample)
  - two charons in namespaces inside one guest, kernel-netlink: qemu start -> CHILD_SA established
    (ipsec_boot_to_established_s), iperf3 through the kernel's ESP between them (kernel_esp_mbps) and over the
    bare veth (guest_veth_mbps): an emulated CPU, so a floor, not what a kernel node does on hardware
Prints a table, then one JSON object as the last line. `--quick`: 2 boots, 3 s of iperf3 (about a minute).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import isthmus
from isthmus.lab.kernel.guest import Guest, boot_guest
from isthmus.linux.capabilities import Capabilities

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
"""


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


def mbps(path: Path) -> float:
    return round(json.loads(path.read_text())["end"]["sum_received"]["bits_per_second"] / 1e6, 1)


def esp(workdir: Path, seconds: int) -> dict[str, float]:
    script = GUEST_LIB.read_text() + ESP.format(seconds=seconds)
    with boot_guest("bench-esp", workdir, script=script, env=ENV) as guest:
        rss = RssSampler(guest.pid)
        rss.start()
        guest.wait_for_file("established", timeout=180)
        established = since_start(guest)
        result = guest.wait(timeout=120 + 2 * seconds)
        rss.join(timeout=5)
    if result.exit_code != 0:
        log = (guest.share / "ipsec.log").read_text(errors="replace") if (guest.share / "ipsec.log").exists() else ""
        raise SystemExit(f"the ESP run failed in the guest:\n{result.output}\n{log[-3000:]}")
    return {
        "established": established,
        "esp_mbps": mbps(guest.share / "esp.json"),
        "veth_mbps": mbps(guest.share / "veth.json"),
        "rss_mb": rss.largest_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    boots, seconds = (2, 3) if args.quick else (5, 10)
    with tempfile.TemporaryDirectory(prefix="isthmus-kernel-bench-") as scratch:
        runs = [boot_and_probe(Path(scratch) / f"probe{n}") for n in range(boots)]
        ipsec = esp(Path(scratch) / "esp", seconds)
    to_script = [float(r["to_script"]) for r in runs]
    to_probe = [float(r["to_probe"]) for r in runs]
    f: dict[str, object] = {
        "boots": boots,
        "vm_boot_to_script_s": round(statistics.median(to_script), 2),
        "vm_boot_to_script_s_max": round(max(to_script), 2),
        "vm_boot_to_probe_s": round(statistics.median(to_probe), 2),
        "vm_probe_all_capabilities": all(bool(r["all"]) for r in runs),
        "vm_rss_mb": round(max(max(float(r["rss_mb"]) for r in runs), ipsec["rss_mb"]), 1),
        "ipsec_boot_to_established_s": round(ipsec["established"], 2),
        "kernel_esp_mbps": ipsec["esp_mbps"],
        "guest_veth_mbps": ipsec["veth_mbps"],
    }
    rows = [
        ("qemu start -> guest script runs (median / max)",
         f"{f['vm_boot_to_script_s']} / {f['vm_boot_to_script_s_max']} s", "4-6.5 s (probe)"),
        ("qemu start -> capability probe answered", f"{f['vm_boot_to_probe_s']} s", "-"),
        ("every capability in the guest", str(f["vm_probe_all_capabilities"]), "True"),
        ("qemu RSS, -m 512 (largest sample)", f"{f['vm_rss_mb']} MB", "360-400 MB (probe)"),
        ("qemu start -> two charons' CHILD_SA established", f"{f['ipsec_boot_to_established_s']} s", "-"),
        ("kernel ESP between namespaces in the guest (TCG)", f"{f['kernel_esp_mbps']} Mbit/s", "reference"),
        ("  the bare veth, same guest", f"{f['guest_veth_mbps']} Mbit/s", "baseline"),
    ]  # fmt: skip
    print(f"\nisthmus real-kernel tier: qemu guests on Debian's kernel, TCG{' --quick' if args.quick else ''}")
    for name, value, goal in rows:
        print(f"{name:<50} {value:>20}  {goal}")
    print(json.dumps(f))


if __name__ == "__main__":
    main()
