"""Lab VMs: a namespace the host agent plugs a NIC into, once the operator binds the NIC to a host."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from isthmus.lab.fabric import LabError, LabState, arm_error, run_in_node
from isthmus.linux.run import LinuxError, ip_json, list_netns


@dataclass(frozen=True)
class Vm:
    name: str
    host: str
    nic: str
    netns: str
    addresses: tuple[str, ...]  # what the VM's eth0 has now


def create(state: LabState, name: str, nic: str, host: str, timeout: float = 30.0) -> Vm:
    """Bind `nic` to `host` as VM `name` and wait until the host agent has plugged it (eth0 has an address).
    A VM of that name with the same NIC on the same host is returned as it is; any other is refused (moving
    it would leave its processes behind in the old namespace)."""
    existing = binding(state, name)
    if existing is not None:
        bound = existing["properties"]
        if bound["networkInterface"].lower() != nic.lower() or bound["host"] != host:
            raise LabError(
                f"VM {name} exists on {bound['host']} (NIC {bound['networkInterface']}): delete it first "
                f"(`isthmus lab vm delete {name}`)"
            )
    else:
        with state.operator() as http:
            body = {"properties": {"networkInterface": nic, "host": host}}
            response = http.put(f"/admin/portBindings/{name}", json=body)
            if response.status_code >= 300:
                raise LabError(f"binding VM {name} to {host}: {arm_error(response)}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vm = find(state, name)
        if vm is not None and vm.addresses:
            return vm
        time.sleep(0.05)
    raise LabError(f"VM {name} was not plugged within {timeout:.0f} s (see the host agent's log)")


def binding(state: LabState, name: str) -> dict[str, Any] | None:
    """The port binding behind VM `name`, None if there is none."""
    with state.operator() as http:
        response = http.get(f"/admin/portBindings/{name}")
    if response.status_code == 404:
        return None
    if response.status_code >= 300:
        raise LabError(f"reading VM {name}: {arm_error(response)}")
    found: dict[str, Any] = response.json()
    return found


def delete(state: LabState, name: str, timeout: float = 30.0) -> None:
    """Unbind VM `name`'s NIC and wait until the host agent has removed the VM; LabError if there is none."""
    if binding(state, name) is None:
        raise LabError(f"no VM {name} in the lab at {state.workdir}")
    with state.operator() as http:
        response = http.delete(f"/admin/portBindings/{name}")
    if response.status_code >= 300:
        raise LabError(f"unbinding VM {name}: {arm_error(response)}")
    deadline = time.monotonic() + timeout
    while find(state, name) is not None:
        if time.monotonic() > deadline:
            raise LabError(f"VM {name} was not removed within {timeout:.0f} s")
        time.sleep(0.05)


def listing(state: LabState) -> list[Vm]:
    """Every VM the operator bound, as its host agent has made it so far (no netns yet: not plugged)."""
    with state.operator() as http:
        response = http.get("/admin/portBindings")
    if response.status_code >= 300:
        raise LabError(f"listing the lab's VMs: {arm_error(response)}")
    out = []
    for bound in response.json()["value"]:
        vm = find(state, bound["name"], bound)
        props = bound["properties"]
        out.append(vm or Vm(bound["name"], props["host"], props["networkInterface"], "", ()))
    return out


def find(state: LabState, name: str, binding: dict[str, Any] | None = None) -> Vm | None:
    """VM `name` as its host agent has made it so far: in a namespace of this machine, or inside a kernel
    node's guest (asked through its share folder); None if it has no namespace (yet)."""
    suffix = f"-vm-{name}"
    nic = binding["properties"]["networkInterface"] if binding else ""
    for netns in list_netns():
        if netns.startswith(state.prefix) and netns.endswith(suffix):
            host = netns[len(state.prefix) : -len(suffix)]
            try:
                links = ip_json(netns, "addr", "show")
            except LinuxError:  # the host agent is removing it right now
                continue
            return Vm(name, host, nic, netns, _eth0_addresses(links))
    for host in _kernel_hosts(state, binding):
        netns = state.topology.vm_netns(host, name)
        code, out = run_in_node(state, host, f"ip -j -n {netns} addr show", timeout=10)
        if code == 0:
            return Vm(name, host, nic, netns, _eth0_addresses(json.loads(out)))
    return None


def _kernel_hosts(state: LabState, binding: dict[str, Any] | None) -> list[str]:
    hosts = [n.name for n in state.topology.nodes() if n.role == "host" and n.name in state.kernel_nodes]
    if binding is not None:
        return [h for h in hosts if h == binding["properties"]["host"]]
    return hosts


def _eth0_addresses(links: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(
        a["local"]
        for link in links
        if link["ifname"] == "eth0"
        for a in link.get("addr_info", [])
        if a["family"] == "inet"
    )


def run(state: LabState, vm: Vm, args: Sequence[str], timeout: float = 30.0) -> tuple[int, str]:
    """Run `args` in VM `vm` wherever it is (a namespace here, or inside a kernel node's guest): its exit code
    and output (stdout and stderr)."""
    if vm.host in state.kernel_nodes:
        return run_in_node(state, vm.host, f"ip netns exec {vm.netns} {shlex.join(args)}", timeout)
    command = ["ip", "netns", "exec", vm.netns, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise LabError(f"{shlex.join(args)} in VM {vm.name} did not finish within {timeout:.0f} s") from error
    return done.returncode, done.stdout + done.stderr
