# Runs inside ONE guest (tests/kernel/test_datapaths.py boots it): the kernel paths the gateway will use, each
# check writing <check>.log and <check>.rc (0: passed) to the share folder, the current directory.
# Addresses: documentation ranges only. $ISTHMUS_PYTHON and PYTHONPATH come from the test.

check() {  # check NAME FUNCTION: run FUNCTION traced, its output in NAME.log, its status in NAME.rc
  local name=$1; shift
  ( set -x; "$@" ) > "$name.log" 2>&1
  echo $? > "$name.rc"
  echo "$name $(cut -d' ' -f1 /proc/uptime)" >> timings.txt  # guest uptime when the check ended
}

capabilities() {
  "$ISTHMUS_PYTHON" -m isthmus.linux.capabilities > capabilities.json
}

pair() {  # pair NS1 NS2 ADDRESS1 ADDRESS2: two namespaces joined by a veth, eth0 in each
  ip netns add "$1" && ip netns add "$2" &&
    ip link add "v-$1" netns "$1" type veth peer name "v-$2" netns "$2" &&  # named apart from the guest's eth0
    ip -n "$1" link set "v-$1" name eth0 && ip -n "$2" link set "v-$2" name eth0 &&
    ip -n "$1" addr add "$3" dev eth0 && ip -n "$2" addr add "$4" dev eth0 &&
    for n in "$1" "$2"; do ip -n "$n" link set lo up && ip -n "$n" link set eth0 up || return 1; done
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

charon() {  # charon NS LOCAL REMOTE LOCAL_TS REMOTE_TS ID PEER_ID: an instance with its own config, /run and vici
  local dir=/tmp/ipsec-$1
  mkdir -p "$dir"
  cat > "$dir/strongswan.conf" <<CONF
charon {
  load_modular = yes
  install_routes = no
  plugins {
    include /etc/strongswan.d/charon/*.conf
    af-alg { load = no }
    vici { socket = unix://$dir/charon.vici }
  }
  filelog { log { path = $dir/charon.log
                  flush_line = yes
                  time_format = %T
                  default = 1
                  knl = 2 } }
}
swanctl { load = pem pkcs1 x509 pubkey random nonce openssl }
CONF
  cat > "$dir/swanctl.conf" <<CONF
connections { c {
  version = 2
  local_addrs = $2
  remote_addrs = $3
  proposals = aes128-sha256-x25519
  local { auth = psk
          id = $6 }
  remote { auth = psk
           id = $7 }
  children { c { local_ts = $4
                 remote_ts = $5
                 esp_proposals = aes128-sha256
                 mode = tunnel } } } }
secrets { ike-1 { id-1 = a
                  id-2 = b
                  secret = "isthmus-kernel-test-0123456789" } }
CONF
  # A private /run per instance (ip netns exec gives each a mount namespace): charon.pid is compiled in.
  STRONGSWAN_CONF=$dir/strongswan.conf ip netns exec "$1" sh -c 'mount -t tmpfs none /run && exec /usr/lib/ipsec/charon' \
    > "$dir/stdout" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 300); do [ -S "$dir/charon.vici" ] && break; sleep 0.1; done
  STRONGSWAN_CONF=$dir/strongswan.conf swanctl --load-all --uri "unix://$dir/charon.vici" --file "$dir/swanctl.conf"
}

ipsec() {  # two charons (kernel-netlink) in two namespaces, IKEv2 PSK, a tunnel-mode ESP SA, a ping through it
  modprobe -a esp4 xfrm_user
  pair ipsec-a ipsec-b 198.51.100.1/24 198.51.100.2/24 || return 1
  ip -n ipsec-a addr add 192.0.2.1/32 dev lo && ip -n ipsec-b addr add 192.0.2.65/32 dev lo &&
    ip -n ipsec-a route add 192.0.2.64/26 via 198.51.100.2 src 192.0.2.1 &&
    ip -n ipsec-b route add 192.0.2.0/26 via 198.51.100.1 src 192.0.2.65 || return 1
  charon ipsec-b 198.51.100.2 198.51.100.1 192.0.2.64/26 192.0.2.0/26 b a || return 1
  charon ipsec-a 198.51.100.1 198.51.100.2 192.0.2.0/26 192.0.2.64/26 a b || return 1
  STRONGSWAN_CONF=/tmp/ipsec-ipsec-a/strongswan.conf \
    swanctl --initiate --child c --timeout 60 --uri unix:///tmp/ipsec-ipsec-a/charon.vici || return 1
  ip netns exec ipsec-a ping -c 3 -i 0.3 -w 10 192.0.2.65; local pinged=$?
  ip -n ipsec-a -s xfrm state > ipsec-states.txt
  ip -n ipsec-a xfrm policy > ipsec-policies.txt
  cp /tmp/ipsec-ipsec-a/charon.log ipsec-charon-a.log; cp /tmp/ipsec-ipsec-b/charon.log ipsec-charon-b.log
  kill "$(cat /tmp/ipsec-ipsec-a/pid)" "$(cat /tmp/ipsec-ipsec-b/pid)"
  return $pinged
}

check capabilities capabilities
check network network
check gre gre
check vlan vlan
check ipsec ipsec
