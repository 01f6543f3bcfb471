"""A provider router on one 802.1Q VLAN, for the kernel tier's L3-over-VLAN test: this machine's kernel has no
8021q, so the lab's FRR cannot sit on a VLAN; scapy answers instead, tagged frames in and out (the tag read from
the socket's auxiliary data). It answers ARP for its link address and echo requests to it and to the host
address behind it, and counts what it answered in COUNT_FILE.

    python tests/kernel/vlan_peer.py IFACE VLAN LINK_ADDRESS HOST_ADDRESS COUNT_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

from scapy.arch.linux import L2Socket
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Dot1Q, Ether

MAC = "02:00:5e:10:00:02"


def main() -> None:
    iface, vlan, link, host, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5])
    sock = L2Socket(iface=iface)
    answered = 0
    count_file.write_text("0")
    while True:
        frame = sock.recv()
        if frame is None or Dot1Q not in frame or frame[Dot1Q].vlan != vlan:
            continue
        if ARP in frame and frame[ARP].op == 1 and frame[ARP].pdst == link:
            sock.send(Ether(dst=frame.src, src=MAC) / Dot1Q(vlan=vlan)
                      / ARP(op=2, hwsrc=MAC, psrc=link, hwdst=frame[ARP].hwsrc, pdst=frame[ARP].psrc))  # fmt: skip
        elif IP in frame and ICMP in frame and frame[ICMP].type == 8 and frame[IP].dst in (link, host):
            echo = frame[ICMP]
            sock.send(Ether(dst=frame.src, src=MAC) / Dot1Q(vlan=vlan) / IP(src=frame[IP].dst, dst=frame[IP].src)
                      / ICMP(type=0, id=echo.id, seq=echo.seq) / echo.payload)  # fmt: skip
            answered += 1
            count_file.write_text(str(answered))


if __name__ == "__main__":
    main()
