"""Lab VMs: a namespace the host agent plugs a NIC into, once the operator binds the NIC to a host."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from isthmus.lab.fabric import LabError, LabState
from isthmus.linux.run import LinuxError, ip_json, list_netns


@dataclass(frozen=True)
class Vm:
    name: str
    host: str
    nic: str
    netns: str
    addresses: tuple[str, ...]  # what the VM's eth0 has now


def create(state: LabState, name: str, nic: str, host: str, timeout: float = 30.0) -> Vm:
    """Bind `nic` to `host` as VM `name` and wait until the host agent has plugged it (eth0 has an address)."""
    with state.operator() as http:
        response = http.put(f"/admin/portBindings/{name}", json={"properties": {"networkInterface": nic, "host": host}})
        if response.status_code >= 300:
            raise LabError(f"binding {name}: {response.status_code} {response.text}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vm = find(state, name)
        if vm is not None and vm.addresses:
            return vm
        time.sleep(0.05)
    raise LabError(f"VM {name} was not plugged within {timeout:.0f} s (see the host agent's log)")


def delete(state: LabState, name: str, timeout: float = 30.0) -> None:
    with state.operator() as http:
        response = http.delete(f"/admin/portBindings/{name}")
        if response.status_code >= 300:
            raise LabError(f"unbinding {name}: {response.status_code} {response.text}")
    deadline = time.monotonic() + timeout
    while find(state, name) is not None:
        if time.monotonic() > deadline:
            raise LabError(f"VM {name} was not removed within {timeout:.0f} s")
        time.sleep(0.05)


def listing(state: LabState) -> list[Vm]:
    with state.operator() as http:
        bindings = http.get("/admin/portBindings").json()["value"]
    out = []
    for binding in bindings:
        vm = find(state, binding["name"], binding)
        props = binding["properties"]
        out.append(vm or Vm(binding["name"], props["host"], props["networkInterface"], "", ()))
    return out


def find(state: LabState, name: str, binding: dict[str, Any] | None = None) -> Vm | None:
    suffix = f"-vm-{name}"
    for netns in list_netns():
        if netns.startswith(state.prefix) and netns.endswith(suffix):
            host = netns[len(state.prefix) : -len(suffix)]
            try:
                links = ip_json(netns, "addr", "show")
            except LinuxError:  # the host agent is removing it right now
                continue
            addresses = tuple(
                a["local"]
                for link in links
                if link["ifname"] == "eth0"
                for a in link.get("addr_info", [])
                if a["family"] == "inet"
            )
            nic = binding["properties"]["networkInterface"] if binding else ""
            return Vm(name, host, nic, netns, addresses)
    return None
