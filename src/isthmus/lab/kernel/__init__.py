"""The lab's real-kernel tier: Debian's stock kernel booted under qemu (TCG), the host's root filesystem
shared read-only under an overlay, so a guest runs the same ip, nft, charon and Python as the host but on a
kernel that has ESP, GRE, VLAN, VRF and netem. image.py finds what scripts/bootstrap unpacked, prepare.py
builds the vmlinux and initramfs from it, guest.py boots guests."""
