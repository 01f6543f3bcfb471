# Shell functions for scripts that run inside a kernel-tier guest (tests/kernel/datapaths.sh,
# bench/kernel_tier.py prepend this file to theirs). Addresses: documentation ranges only.

pair() {  # pair NS1 NS2 ADDRESS1 ADDRESS2: two namespaces joined by a veth, eth0 in each
  ip netns add "$1" && ip netns add "$2" &&
    ip link add "v-$1" netns "$1" type veth peer name "v-$2" netns "$2" &&  # named apart from the guest's eth0
    ip -n "$1" link set "v-$1" name eth0 && ip -n "$2" link set "v-$2" name eth0 &&
    ip -n "$1" addr add "$3" dev eth0 && ip -n "$2" addr add "$4" dev eth0 &&
    for n in "$1" "$2"; do ip -n "$n" link set lo up && ip -n "$n" link set eth0 up || return 1; done
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
swanctl { load = pem pkcs1 pkcs8 x509 pubkey random nonce sha1 sha2 hmac aes gmp curve25519 }
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
                 esp_proposals = ${ESP_PROPOSALS:-aes128-sha256}
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

ipsec_pair() {  # two charons (kernel-netlink) in namespaces ipsec-a and ipsec-b, IKEv2 PSK, a tunnel-mode
  # ESP SA between 192.0.2.0/26 (a, 192.0.2.1 on its lo) and 192.0.2.64/26 (b, 192.0.2.65), outer 198.51.100.1/.2
  modprobe -a esp4 xfrm_user authenc echainiv
  pair ipsec-a ipsec-b 198.51.100.1/24 198.51.100.2/24 || return 1
  ip -n ipsec-a addr add 192.0.2.1/32 dev lo && ip -n ipsec-b addr add 192.0.2.65/32 dev lo &&
    ip -n ipsec-a route add 192.0.2.64/26 via 198.51.100.2 src 192.0.2.1 &&
    ip -n ipsec-b route add 192.0.2.0/26 via 198.51.100.1 src 192.0.2.65 || return 1
  charon ipsec-b 198.51.100.2 198.51.100.1 192.0.2.64/26 192.0.2.0/26 b a || return 1
  charon ipsec-a 198.51.100.1 198.51.100.2 192.0.2.0/26 192.0.2.64/26 a b || return 1
  STRONGSWAN_CONF=/tmp/ipsec-ipsec-a/strongswan.conf \
    swanctl --initiate --child c --timeout 60 --uri unix:///tmp/ipsec-ipsec-a/charon.vici
}

ipsec_stop() {
  kill "$(cat /tmp/ipsec-ipsec-a/pid)" "$(cat /tmp/ipsec-ipsec-b/pid)"
}
