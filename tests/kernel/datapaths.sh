# Runs inside ONE guest (tests/kernel/test_datapaths.py boots it): the kernel paths the gateway will use, each
# check writing <check>.log and <check>.rc (0: passed) to the share folder, the current directory.
# guest_lib.sh comes first (the test prepends it); $ISTHMUS_PYTHON and PYTHONPATH come from the test.

check() {  # check NAME FUNCTION: run FUNCTION traced, its output in NAME.log, its status in NAME.rc
  local name=$1; shift
  ( set -x; "$@" ) > "$name.log" 2>&1
  echo $? > "$name.rc"
  echo "$name $(cut -d' ' -f1 /proc/uptime)" >> timings.txt  # guest uptime when the check ended
}

capabilities() {
  "$ISTHMUS_PYTHON" -m isthmus.linux.capabilities > capabilities.json
}

network() {  # the guest's eth0 is a tap in a bridge on the host: reach the host's side
  ip addr add 198.18.0.2/24 dev eth0 && ip link set eth0 up &&
    ping -c 3 -i 0.3 -w 20 198.18.0.1
}

gre() {  # a keyed kernel GRE tunnel between two namespaces, a ping through it
  pair gre-a gre-b 203.0.113.1/24 203.0.113.2/24 || return 1
  ip -n gre-a link add gre1 type gre local 203.0.113.1 remote 203.0.113.2 key 5 &&
    ip -n gre-b link add gre1 type gre local 203.0.113.2 remote 203.0.113.1 key 5 &&
    ip -n gre-a addr add 192.0.2.129/30 dev gre1 && ip -n gre-b addr add 192.0.2.130/30 dev gre1 &&
    ip -n gre-a link set gre1 up && ip -n gre-b link set gre1 up || return 1
  ip -n gre-a -d link show gre1 > gre-link.txt
  ip netns exec gre-a ping -c 3 -i 0.3 -w 10 192.0.2.130 || return 1
  ip -n gre-a -s -j link show gre1 > gre-stats.json
}

vlan() {  # 802.1Q sub-interfaces (VLAN 10) on both ends of a veth, a ping between them
  pair vlan-a vlan-b 203.0.113.17/28 203.0.113.18/28 || return 1
  for n in vlan-a vlan-b; do
    ip -n "$n" link add link eth0 name eth0.10 type vlan id 10 && ip -n "$n" link set eth0.10 up || return 1
  done
  ip -n vlan-a addr add 192.0.2.193/28 dev eth0.10 && ip -n vlan-b addr add 192.0.2.194/28 dev eth0.10 || return 1
  ip -n vlan-a -d link show eth0.10 > vlan-link.txt
  ip netns exec vlan-a ping -c 3 -i 0.3 -w 10 192.0.2.194
}

ipsec() {  # strongSwan's SAs and policies in the kernel, a ping through them
  ipsec_pair || return 1
  ip netns exec ipsec-a ping -c 3 -i 0.3 -w 10 192.0.2.65; local pinged=$?
  ip -n ipsec-a -s xfrm state > ipsec-states.txt
  ip -n ipsec-a xfrm policy > ipsec-policies.txt
  cp /tmp/ipsec-ipsec-a/charon.log ipsec-charon-a.log; cp /tmp/ipsec-ipsec-b/charon.log ipsec-charon-b.log
  ipsec_stop
  return $pinged
}

check capabilities capabilities
check network network
check gre gre
check vlan vlan
check ipsec ipsec
