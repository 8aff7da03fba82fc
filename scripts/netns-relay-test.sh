#!/usr/bin/env bash
# netns-relay-test.sh — circuit relay v2 + DCUtR between two NATed hosts.
#
# Usage: scripts/netns-relay-test.sh PATH_TO_CNODE_BINARY
# (draft)
set -euo pipefail

CNODE=${1:?usage: $0 PATH_TO_CNODE_BINARY}
CNODE=$(readlink -f "$CNODE")
[[ -x $CNODE ]] || { echo "not executable: $CNODE" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "must run as root (creates network namespaces)" >&2; exit 2; }

REQUIRE_DIRECT=${REQUIRE_DIRECT:-0}
WAIT=${WAIT:-30}
LOG_FILTER=${CNODE_LOG:-info,libp2p_dcutr=debug,libp2p_relay=debug,libp2p_swarm=debug,libp2p_identify=debug,cnode_net=debug}
KEEP_LOGS=${KEEP_LOGS:-}

P="cnr$$"
NS_PUB=${P}pub NS_RA=${P}ra NS_RB=${P}rb NS_A=${P}a NS_B=${P}b
ALL_NS=("$NS_PUB" "$NS_RA" "$NS_RB" "$NS_A" "$NS_B")

R_IP=192.0.2.1            # the relay's public address (on pub's lo)
RA_WAN=198.51.100.2 PUB_RA=198.51.100.1
RB_WAN=203.0.113.2 PUB_RB=203.0.113.1
A_IP=10.0.1.2 RA_LAN=10.0.1.1
B_IP=10.0.2.2 RB_LAN=10.0.2.1
PORT=4001

WORK=$(mktemp -d "/tmp/${P}.XXXXXX")
PIDS=()

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    local deadline=$((SECONDS + 5))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ns in "${ALL_NS[@]}"; do
        if ip netns list | grep -qw "^$ns"; then
            # anything else still running inside one of our namespaces was started by us
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
            ip netns del "$ns" 2>/dev/null
        fi
    done
    if [[ -n $KEEP_LOGS ]]; then
        mkdir -p "$KEEP_LOGS" && cp "$WORK"/*.log "$KEEP_LOGS"/ 2>/dev/null
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---------------------------------------------------------------- topology
for ns in "${ALL_NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done

# pub <-> ra, pub <-> rb  (the "internet")
ip -n "$NS_PUB" link add to_ra type veth peer name wan netns "$NS_RA"
ip -n "$NS_PUB" link add to_rb type veth peer name wan netns "$NS_RB"
ip -n "$NS_PUB" addr add "$PUB_RA/24" dev to_ra
ip -n "$NS_PUB" addr add "$PUB_RB/24" dev to_rb
ip -n "$NS_PUB" addr add "$R_IP/32" dev lo
ip -n "$NS_PUB" link set to_ra up
ip -n "$NS_PUB" link set to_rb up
nsx "$NS_PUB" sysctl -qw net.ipv4.ip_forward=1

# ra <-> a, rb <-> b  (the LANs)
ip -n "$NS_RA" link add lan type veth peer name eth0 netns "$NS_A"
ip -n "$NS_RB" link add lan type veth peer name eth0 netns "$NS_B"

setup_router() { # ns wan_ip pub_gw lan_ip
    local ns=$1 wan=$2 gw=$3 lan=$4
    ip -n "$ns" addr add "$wan/24" dev wan
    ip -n "$ns" addr add "$lan/24" dev lan
    ip -n "$ns" link set wan up
    ip -n "$ns" link set lan up
    ip -n "$ns" route add default via "$gw"
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=1
    # A typical home NAT: masquerade out of the WAN, drop unsolicited inbound.
    nsx "$ns" nft -f - <<EOF
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
table ip filter {
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
}
EOF
}
setup_router "$NS_RA" "$RA_WAN" "$PUB_RA" "$RA_LAN"
setup_router "$NS_RB" "$RB_WAN" "$PUB_RB" "$RB_LAN"

setup_host() { # ns ip gw
    ip -n "$1" addr add "$2/24" dev eth0
    ip -n "$1" link set eth0 up
    ip -n "$1" route add default via "$3"
}
setup_host "$NS_A" "$A_IP" "$RA_LAN"
setup_host "$NS_B" "$B_IP" "$RB_LAN"

log "topology up (namespaces ${P}{pub,ra,rb,a,b})"

# ---------------------------------------------------------------- nodes
for n in r a b; do
    "$CNODE" --data "$WORK/$n" init >/dev/null
done
R_ID=$("$CNODE" --data "$WORK/r" id)
A_ID=$("$CNODE" --data "$WORK/a" id)
B_ID=$("$CNODE" --data "$WORK/b" id)
log "R=$R_ID"
log "A=$A_ID"
log "B=$B_ID"
R_TCP=/ip4/$R_IP/tcp/$PORT/p2p/$R_ID
R_QUIC=/ip4/$R_IP/udp/$PORT/quic-v1/p2p/$R_ID

start_node() { # name ns args...
    local name=$1 ns=$2; shift 2
    CNODE_LOG=$LOG_FILTER RUST_LOG=$LOG_FILTER \
        ip netns exec "$ns" "$CNODE" --data "$WORK/$name" run --api 127.0.0.1:0 --no-mdns "$@" \
        </dev/null >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
}

api() { # name ns cmd...  (prints JSON or nothing)
    local name=$1 ns=$2; shift 2
    timeout 5 ip netns exec "$ns" "$CNODE" --data "$WORK/$name" "$@" --json 2>/dev/null || true
}

# wait_for DESCRIPTION SECONDS CMD...: poll CMD until it succeeds or time runs out
wait_for() {
    local what=$1 secs=$2; shift 2
    local deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        if "$@"; then return 0; fi
        sleep 0.5
    done
    log "timed out after ${secs}s waiting for: $what"
    return 1
}

dump_logs() {
    for n in r a b; do
        [[ -f $WORK/$n.log ]] || continue
        echo "----- last lines of $n.log -----" >&2
        tail -n 40 "$WORK/$n.log" >&2
    done
}

start_node r "$NS_PUB" --listen "/ip4/$R_IP/tcp/$PORT" --listen "/ip4/$R_IP/udp/$PORT/quic-v1" --relay-server on
r_up() { [[ -n $(api r "$NS_PUB" status) ]]; }
wait_for "relay API" "$WAIT" r_up || { dump_logs; exit 1; }
# sanity: both hosts reach the relay's TCP port through their NAT
for ns in "$NS_A" "$NS_B"; do
    nsx "$ns" timeout 3 bash -c "exec 3<>/dev/tcp/$R_IP/$PORT" ||
        { log "no TCP path from $ns to $R_IP:$PORT"; exit 1; }
done

start_node a "$NS_A" --listen "/ip4/0.0.0.0/tcp/$PORT" --listen "/ip4/0.0.0.0/udp/$PORT/quic-v1" \
    --bootstrap "$R_TCP" --relay "$R_TCP"
A_CIRCUIT=""
a_reserved() {
    A_CIRCUIT=$(api a "$NS_A" status | jq -r '.listen_addrs[]? | select(contains("p2p-circuit"))' | head -n1)
    [[ -n $A_CIRCUIT ]]
}
wait_for "A's relay reservation" "$WAIT" a_reserved || { dump_logs; exit 1; }
log "A reserved: $A_CIRCUIT"

start_node b "$NS_B" --listen "/ip4/0.0.0.0/tcp/$PORT" --listen "/ip4/0.0.0.0/udp/$PORT/quic-v1" \
    --bootstrap "$R_TCP" --bootstrap "$R_TCP/p2p-circuit/p2p/$A_ID"

a_in_b() { api b "$NS_B" peers | jq -e --arg p "$A_ID" 'any(.[]; .peer_id == $p)' >/dev/null; }
RELAYED=no DIRECT=no
if wait_for "B connected to A" "$WAIT" a_in_b; then
    RELAYED=yes
    api b "$NS_B" peers | jq -c --arg p "$A_ID" '.[] | select(.peer_id == $p) | {transport, direction, addrs}' >&2
fi

direct() {
    local q
    for q in "b $NS_B $A_ID" "a $NS_A $B_ID"; do
        set -- $q
        api "$1" "$2" peers | jq -e --arg p "$3" \
            'any(.[]; .peer_id == $p and any(.addrs[]; contains("p2p-circuit") | not))' >/dev/null && return 0
    done
    grep -q "hole punch succeeded" "$WORK/a.log" "$WORK/b.log" && return 0
    return 1
}
if [[ $RELAYED == yes ]] && wait_for "direct connection" "$WAIT" direct; then DIRECT=yes; fi

for n in a b; do
    grep -h "hole punch" "$WORK/$n.log" | sed "s/^/[$n] /" >&2 || true
done
dump_logs
echo "RESULT relayed=$RELAYED direct=$DIRECT"
[[ $RELAYED == yes ]] || exit 1
if [[ $REQUIRE_DIRECT == 1 && $DIRECT != yes ]]; then exit 1; fi
exit 0
