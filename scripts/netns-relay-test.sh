#!/usr/bin/env bash
# netns-relay-test.sh — circuit relay v2 + DCUtR hole punching between two
# NATed cnode hosts through a public relay, inside throw-away network namespaces.
#
# Usage:  scripts/netns-relay-test.sh PATH_TO_CNODE_BINARY      (as root)
#
# Environment:
#   REQUIRE_DIRECT=1   also fail unless a direct (hole-punched) A<->B connection appears
#   KEEP_LOGS=DIR      copy the node logs (r.log, a.log, b.log) to DIR before cleaning up
#   VERBOSE=1          print the interesting log lines even when the test passes
#   RELAY_TRANSPORT=tcp|quic  how A and B reach R (--relay, --bootstrap and the
#                      circuit address); default tcp
#   CNODE_LOG=FILTER   tracing filter for the nodes (default: see LOG_FILTER below)
#
# Topology (all namespaces are named cnr<PID><role> and deleted on exit):
#
#      a (10.0.1.2)                                              b (10.0.2.2)
#          | eth0                                                  | eth0
#          | lan 10.0.1.1                                          | lan 10.0.2.1
#         ra  NAT: masquerade on wan,                 NAT: ...    rb
#          |  drop unsolicited inbound                             |
#          | wan 198.51.100.2                                      | wan 203.0.113.2
#          | to_ra 198.51.100.1    pub (ip_forward)    to_rb 203.0.113.1
#          +------------------- relay R on 192.0.2.1 (lo) --------+
#
# R runs with --relay-server on. A reserves a slot on R (--relay) and
# bootstraps from R. B bootstraps from R and from A's circuit address
# /ip4/192.0.2.1/tcp/4001/p2p/<R>/p2p-circuit/p2p/<A> (or the
# udp/4001/quic-v1 form with RELAY_TRANSPORT=quic). Required: B gets
# connected to A (through R). Reported, and required only with REQUIRE_DIRECT=1:
# a direct (non p2p-circuit) A<->B connection from DCUtR within 30 s.
# The last line on stdout is always: RESULT relayed=yes|no direct=yes|no
#
# ============================================================================
# History: this scenario first found six node bugs (relay server never
# advertising HOP, no reservation retry, a panic in the relay-server Switch,
# circuit addresses dropped, loopback addresses leaking to remote peers,
# double dial at start); all are fixed in cnode-net. With the fixes, relayed
# and hole-punched (DCUtR over TCP) connections both come up in ~3 s, and the
# Rust test runs this script with REQUIRE_DIRECT=1.
# ============================================================================
set -euo pipefail

usage() { echo "usage: $0 PATH_TO_CNODE_BINARY" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
CNODE=$(readlink -f -- "$1") || usage
[[ -x $CNODE && -f $CNODE ]] || { echo "not an executable: $1" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "must run as root (it creates network namespaces)" >&2; exit 2; }
for tool in ip nft jq timeout; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

REQUIRE_DIRECT=${REQUIRE_DIRECT:-0}
RELAY_TRANSPORT=${RELAY_TRANSPORT:-tcp}
[[ $RELAY_TRANSPORT == tcp || $RELAY_TRANSPORT == quic ]] ||
    { echo "RELAY_TRANSPORT must be tcp or quic" >&2; exit 2; }
VERBOSE=${VERBOSE:-0}
KEEP_LOGS=${KEEP_LOGS:-}
LOG_FILTER=${CNODE_LOG:-info,cnode_net=debug,libp2p_relay=debug,libp2p_dcutr=debug,libp2p_identify=debug,libp2p_swarm=debug,libp2p_tcp=debug,libp2p_quic=debug}

P="cnr$$"
NS_PUB=${P}pub NS_RA=${P}ra NS_RB=${P}rb NS_A=${P}a NS_B=${P}b
ALL_NS=("$NS_PUB" "$NS_RA" "$NS_RB" "$NS_A" "$NS_B")

R_IP=192.0.2.1                          # the relay's public address (on pub's lo)
PUB_RA=198.51.100.1 RA_WAN=198.51.100.2
PUB_RB=203.0.113.1 RB_WAN=203.0.113.2
RA_LAN=10.0.1.1 A_IP=10.0.1.2
RB_LAN=10.0.2.1 B_IP=10.0.2.2
PORT=4001

RELAYED=no DIRECT=no
PIDS=()
WORK=""

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    local pid deadline ns
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    deadline=$((SECONDS + 5))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ns in "${ALL_NS[@]}"; do
        [[ -e /run/netns/$ns ]] || continue
        # Whatever still runs in our namespaces (e.g. a hung API client) is ours.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ -n $KEEP_LOGS ]]; then
            mkdir -p "$KEEP_LOGS" && cp "$WORK"/*.log "$KEEP_LOGS"/ 2>/dev/null &&
                log "logs kept in $KEEP_LOGS"
        fi
        rm -rf "$WORK"
    fi
    echo "RESULT relayed=$RELAYED direct=$DIRECT"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

WORK=$(mktemp -d "/tmp/${P}.XXXXXX")

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ------------------------------------------------------------------ topology
for ns in "${ALL_NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done

# veths are created directly inside the namespaces: nothing appears on the host.
ip -n "$NS_PUB" link add to_ra type veth peer name wan netns "$NS_RA"
ip -n "$NS_PUB" link add to_rb type veth peer name wan netns "$NS_RB"
ip -n "$NS_RA" link add lan type veth peer name eth0 netns "$NS_A"
ip -n "$NS_RB" link add lan type veth peer name eth0 netns "$NS_B"

ip -n "$NS_PUB" addr add "$PUB_RA/24" dev to_ra
ip -n "$NS_PUB" addr add "$PUB_RB/24" dev to_rb
ip -n "$NS_PUB" addr add "$R_IP/32" dev lo
ip -n "$NS_PUB" link set to_ra up
ip -n "$NS_PUB" link set to_rb up
nsx "$NS_PUB" sysctl -qw net.ipv4.ip_forward=1

setup_router() { # ns wan_ip gateway lan_ip
    local ns=$1 wan=$2 gw=$3 lan=$4
    ip -n "$ns" addr add "$wan/24" dev wan
    ip -n "$ns" addr add "$lan/24" dev lan
    ip -n "$ns" link set wan up
    ip -n "$ns" link set lan up
    ip -n "$ns" route add default via "$gw"
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=1
    # A home NAT: masquerade out of the WAN (keeps the source port when it is
    # free), drop whatever arrives on the WAN unsolicited.
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
        iifname "wan" counter drop comment "unsolicited-to-router"
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" counter drop comment "unsolicited-to-lan"
    }
}
EOF
}
setup_router "$NS_RA" "$RA_WAN" "$PUB_RA" "$RA_LAN"
setup_router "$NS_RB" "$RB_WAN" "$PUB_RB" "$RB_LAN"

setup_host() { # ns ip gateway
    ip -n "$1" addr add "$2/24" dev eth0
    ip -n "$1" link set eth0 up
    ip -n "$1" route add default via "$3"
}
setup_host "$NS_A" "$A_IP" "$RA_LAN"
setup_host "$NS_B" "$B_IP" "$RB_LAN"
log "topology up: namespaces ${P}{pub,ra,rb,a,b}, relay at $R_IP"

# --------------------------------------------------------------------- nodes
for n in r a b; do "$CNODE" --data "$WORK/$n" init >/dev/null; done
R_ID=$("$CNODE" --data "$WORK/r" id)
A_ID=$("$CNODE" --data "$WORK/a" id)
B_ID=$("$CNODE" --data "$WORK/b" id)
log "R=$R_ID"
log "A=$A_ID"
log "B=$B_ID"
if [[ $RELAY_TRANSPORT == quic ]]; then
    R_ADDR=/ip4/$R_IP/udp/$PORT/quic-v1/p2p/$R_ID
else
    R_ADDR=/ip4/$R_IP/tcp/$PORT/p2p/$R_ID
fi
A_VIA_R=$R_ADDR/p2p-circuit/p2p/$A_ID

declare -A NODE_NS=([r]=$NS_PUB [a]=$NS_A [b]=$NS_B)
declare -A NODE_PID=()

start_node() { # name args...
    local name=$1; shift
    CNODE_LOG=$LOG_FILTER ip netns exec "${NODE_NS[$name]}" \
        "$CNODE" --data "$WORK/$name" run --api 127.0.0.1:0 --no-mdns "$@" \
        </dev/null >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=("$!")
    NODE_PID[$name]=$!
}

# api NAME status|peers: the node's JSON on stdout; fails if there is none.
api() {
    local out
    out=$(timeout 5 ip netns exec "${NODE_NS[$1]}" "$CNODE" --data "$WORK/$1" "$2" --json 2>/dev/null) || return 1
    [[ -n $out ]] && jq -e . >/dev/null 2>&1 <<<"$out" || return 1
    printf '%s\n' "$out"
}

# q NAME status|peers JQ_FILTER [jq args...]: true if the filter yields true.
q() {
    local name=$1 what=$2 filter=$3 out
    shift 3
    out=$(api "$name" "$what") || return 1
    jq -e "$@" "$filter" >/dev/null 2>&1 <<<"$out"
}

# Something that makes further waiting pointless; prints why.
FATAL=""
fatal_seen() {
    local n
    for n in "${!NODE_PID[@]}"; do
        if ! kill -0 "${NODE_PID[$n]}" 2>/dev/null; then
            FATAL="node $n exited: $(grep -v '^\s' "$WORK/$n.log" | tail -n 3 | cut -c1-300)"
            return 0
        fi
        if grep -q "panicked at" "$WORK/$n.log"; then
            FATAL="node $n panicked: $(grep -m1 -A1 'panicked at' "$WORK/$n.log" | cut -c1-300 | tr '\n' ' ')"
            return 0
        fi
    done
    return 1
}

# wait_for DESCRIPTION SECONDS CHECK [args...]: poll CHECK until it succeeds,
# the deadline passes, or a fatal condition shows up.
wait_for() {
    local what=$1 secs=$2
    shift 2
    local deadline=$((SECONDS + secs))
    while :; do
        if "$@"; then return 0; fi
        if fatal_seen; then log "gave up waiting for $what: $FATAL"; return 1; fi
        if ((SECONDS >= deadline)); then log "timed out after ${secs}s waiting for $what"; return 1; fi
        sleep 0.3
    done
}

# The log lines that matter for relaying and hole punching.
diagnose() {
    local n ns f
    for n in r a b; do
        f=$WORK/$n.log
        [[ -s $f ]] || continue
        echo "----- $n.log (relay / hole punch / errors) -----" >&2
        grep -E "panicked|Reservation|relay client ev|relay server ev|advertising protocol|disabling protocol|no protocol could be agreed|external address|hole punch|libp2p_dcutr|re-dialing with new port|ERROR|WARN" \
            "$f" | grep -v "^\s" | tail -n 20 | cut -c1-400 >&2 || true
        echo "  lines mentioning p2p-circuit: $(grep -c p2p-circuit "$f" || true);" \
            "self-dials (WrongPeerId with our own id): $(grep -c "WrongPeerId { obtained: PeerId(\"$(id_of "$n")\")" "$f" || true)" >&2
    done
    for ns in "$NS_RA" "$NS_RB"; do
        echo "----- $ns: unsolicited WAN packets dropped -----" >&2
        nsx "$ns" nft list table ip filter 2>/dev/null |
            grep -o 'counter packets [0-9]* bytes [0-9]* drop comment "[^"]*"' >&2 || true
    done
}
id_of() { case $1 in r) echo "$R_ID" ;; a) echo "$A_ID" ;; b) echo "$B_ID" ;; esac; }

fail() { log "FAIL: $*"; diagnose; exit 1; }

# 1. the relay
start_node r --listen "/ip4/$R_IP/tcp/$PORT" --listen "/ip4/$R_IP/udp/$PORT/quic-v1" --relay-server on
wait_for "R's API" 15 q r status '.relay_server == true' || fail "relay R did not come up"

# 2. A: reserve a slot on R
start_node a --listen "/ip4/0.0.0.0/tcp/$PORT" --listen "/ip4/0.0.0.0/udp/$PORT/quic-v1" \
    --bootstrap "$R_ADDR" --relay "$R_ADDR"
A_CIRCUIT=""
a_reserved() {
    A_CIRCUIT=$(api a status | jq -r '.listen_addrs[] | select(contains("/p2p-circuit"))' | head -n1) || true
    [[ -n $A_CIRCUIT ]]
}
# cnode retries a refused or lost reservation with backoff, so just wait.
wait_for "A's reservation on R" 20 a_reserved ||
    fail "A got no reservation on R within 20 s: $(grep -o 'Reservation([A-Za-z(]*)*' "$WORK/a.log" | tail -n1)"
log "A reserved a slot: $A_CIRCUIT"

# 3. B: bootstrap from R and from A's circuit address
start_node b --listen "/ip4/0.0.0.0/tcp/$PORT" --listen "/ip4/0.0.0.0/udp/$PORT/quic-v1" \
    --bootstrap "$R_ADDR" --bootstrap "$A_VIA_R"

# How R sees A and B: must be their routers' public addresses.
r_sees_both() {
    q r peers '(map(select(.peer_id == $a or .peer_id == $b)) | length) == 2' \
        --arg a "$A_ID" --arg b "$B_ID"
}
if wait_for "R connected to A and B" 5 r_sees_both; then
    api r peers | jq -r --arg a "$A_ID" --arg b "$B_ID" '.[]
        | select(.peer_id == $a or .peer_id == $b)
        | "R sees \(if .peer_id == $a then "A" else "B" end) at \(.addrs | join(" "))"' >&2 || true
fi

b_has_a() { q b peers 'any(.[]; .peer_id == $p)' --arg p "$A_ID"; }
if wait_for "B connected to A" 20 b_has_a; then
    RELAYED=yes
    api b peers | jq -r --arg p "$A_ID" '.[] | select(.peer_id == $p)
        | "B -> A: transport=\(.transport) direction=\(.direction) addrs=\(.addrs | join(" "))"' >&2 || true
fi
if [[ $RELAYED != yes ]]; then
    fail "B never connected to A through R ($A_VIA_R)"
fi

# 4. DCUtR: a connection between A and B that does not go through R
direct_on() { # name peer_id
    q "$1" peers 'any(.[]; .peer_id == $p and any(.addrs[]; contains("/p2p-circuit") | not))' \
        --arg p "$2"
}
direct() {
    direct_on b "$A_ID" || direct_on a "$B_ID" ||
        grep -q "hole punch succeeded" "$WORK/a.log" "$WORK/b.log"
}
if wait_for "a direct A<->B connection (DCUtR)" 30 direct; then
    DIRECT=yes
    sleep 0.5 # let both sides list the new connection
fi
for n in a b; do
    peer=$([[ $n == a ]] && echo "$B_ID" || echo "$A_ID")
    api "$n" peers | jq -r --arg p "$peer" --arg n "${n^^}" '.[] | select(.peer_id == $p)
        | "\($n) connections to peer: \(.addrs | join(" ")) (first: \(.transport))"' >&2 || true
    grep -h "hole punch" "$WORK/$n.log" | cut -c1-300 | sed "s/^/[$n] /" >&2 || true
done

if [[ $DIRECT != yes ]]; then
    diagnose
    if [[ $REQUIRE_DIRECT == 1 ]]; then
        log "FAIL: no direct connection and REQUIRE_DIRECT=1"
        exit 1
    fi
    log "relayed connection OK; hole punching did not produce a direct connection (not required)"
elif [[ $VERBOSE == 1 ]]; then
    diagnose
fi
log "PASS"
exit 0
