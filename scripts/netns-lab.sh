#!/usr/bin/env bash
# A Consul server lab on one Linux machine: each server is a `consim agent` in a network namespace
# of its own (its own IP, its own ports 8300/8301/8302/8500), wired to one bridge; partitions are
# kernel packet drops (nftables rules inside the namespaces), not consim's network layer.
#
#   sudo scripts/netns-lab.sh up 3            # namespaces, veths, bridge, an agent in each
#   sudo scripts/netns-lab.sh status          # agents, pids, who leads
#   sudo scripts/netns-lab.sh exec s1 consim operator raft list-peers -http-addr=10.77.0.1:8500
#   sudo scripts/netns-lab.sh partition s1 s2,s3   # drop every packet between the groups
#   sudo scripts/netns-lab.sh heal
#   sudo scripts/netns-lab.sh kill s2 | stop s2 | start s2 | wipe s2
#   sudo scripts/netns-lab.sh down            # stop everything, remove namespaces and data
#
# Needs root, iproute2 and nftables. Environment: LAB (name prefix, default clab), LAB_NET
# (first three octets, default 10.77.0), LAB_DIR (data dirs and logs, default /tmp/$LAB),
# CONSIM (the consim command, default: consim on PATH), LAB_RAFT_MULTIPLIER (default 1, Consul's
# production advice; Consul's own default is 5).
set -euo pipefail

LAB=${LAB:-clab}
NET=${LAB_NET:-10.77.0}
DIR=${LAB_DIR:-/tmp/$LAB}
CONSIM=${CONSIM:-consim}
MULTIPLIER=${LAB_RAFT_MULTIPLIER:-1}
BRIDGE="${LAB}-br"

die() { echo "netns-lab: $*" >&2; exit 2; }
ns() { echo "${LAB}-$1"; }                       # s1 -> clab-s1
num() { [[ $1 =~ ^s([0-9]+)$ ]] || die "server names are s1, s2, ...: got '$1'"; echo "${BASH_REMATCH[1]}"; }
ip_of() { echo "${NET}.$(num "$1")"; }
servers() { ls "$DIR"/servers 2>/dev/null | sort -V; }

agent_cmd() { # the consul agent command line of server $1, as a learner would type it
    local name=$1 count; count=$(cat "$DIR/count")
    local joins=() k
    for ((k = 1; k <= count && k <= 3; k++)); do joins+=("-retry-join=${NET}.$k"); done
    echo "$CONSIM agent -server -node=$name -bind=$(ip_of "$name") -client=$(ip_of "$name")" \
        "-data-dir=$DIR/$name -bootstrap-expect=$count ${joins[*]} -retry-interval=1s" \
        "-config-file=$DIR/lab.json -pid-file=$DIR/$name.pid"
}

start() { # run the agent of $1 inside its namespace, in the background, logging to $DIR/$1.log
    local name=$1
    if [[ -f $DIR/$name.pid ]] && kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then
        die "$name is already running (pid $(cat "$DIR/$name.pid"))"
    fi
    # shellcheck disable=SC2046
    setsid ip netns exec "$(ns "$name")" $(agent_cmd "$name") >>"$DIR/$name.log" 2>&1 </dev/null &
    echo "$name: started in namespace $(ns "$name") at $(ip_of "$name") (log $DIR/$name.log)"
}

up() {
    local count=${1:-3}
    [[ $count =~ ^[1-9][0-9]*$ ]] || die "usage: up N (servers)"
    [[ -e $DIR/count ]] && die "a lab is already up in $DIR (run: $0 down)"
    mkdir -p "$DIR/servers"
    echo "$count" >"$DIR/count"
    echo "{\"performance\": {\"raft_multiplier\": $MULTIPLIER}}" >"$DIR/lab.json"
    # One bridge in the host's namespace, with an address of its own so the host reaches every
    # server (curl, consim's commands with -http-addr).
    ip link add "$BRIDGE" type bridge
    ip addr add "${NET}.254/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local k name
    for ((k = 1; k <= count; k++)); do
        name=s$k
        touch "$DIR/servers/$name"
        ip netns add "$(ns "$name")"
        # A veth pair: one end on the bridge, the other inside the namespace as eth0.
        ip link add "${LAB}v$k" type veth peer name "${LAB}p$k"
        ip link set "${LAB}v$k" master "$BRIDGE" up
        ip link set "${LAB}p$k" netns "$(ns "$name")"
        ip -n "$(ns "$name")" link set "${LAB}p$k" name eth0
        ip -n "$(ns "$name")" addr add "${NET}.$k/24" dev eth0
        ip -n "$(ns "$name")" link set eth0 up
        ip -n "$(ns "$name")" link set lo up
    done
    for name in $(servers); do start "$name"; done
}

drop_between() { # kernel drops both ways between servers $1 and $2, in both namespaces
    local a=$1 b=$2
    for pair in "$a $b" "$b $a"; do
        set -- $pair
        local n; n=$(ns "$1")
        ip netns exec "$n" nft add table inet consim
        ip netns exec "$n" nft add chain inet consim input '{ type filter hook input priority 0; }'
        ip netns exec "$n" nft add chain inet consim output '{ type filter hook output priority 0; }'
        ip netns exec "$n" nft add rule inet consim input ip saddr "$(ip_of "$2")" drop
        ip netns exec "$n" nft add rule inet consim output ip daddr "$(ip_of "$2")" drop
    done
}

partition() { # partition s1 s2,s3: no packet crosses between groups
    [[ $# -ge 2 ]] || die "usage: partition GROUP GROUP...  (GROUP: s1 or s1,s2)"
    local groups=("$@") i j a b
    for ((i = 0; i < ${#groups[@]}; i++)); do
        for ((j = i + 1; j < ${#groups[@]}; j++)); do
            for a in ${groups[i]//,/ }; do
                for b in ${groups[j]//,/ }; do drop_between "$a" "$b"; done
            done
        done
    done
    echo "partitioned: ${groups[*]} (nftables drops in the namespaces)"
}

heal() {
    local name
    for name in $(servers); do
        ip netns exec "$(ns "$name")" nft delete table inet consim 2>/dev/null || true
    done
    echo "healed: every nftables drop removed"
}

signal() { # signal NAME SIG; KILL and TERM wait (up to 20 s) until the process is gone
    local pidfile=$DIR/$1.pid pid i
    [[ -f $pidfile ]] || die "$1 is not running"
    pid=$(cat "$pidfile")
    kill "-$2" "$pid" 2>/dev/null || die "$1 is not running"
    if [[ $2 == KILL || $2 == TERM ]]; then
        for ((i = 0; i < 200; i++)); do
            [[ -d /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || break
            sleep 0.1
        done
        rm -f "$pidfile"   # a SIGKILLed agent cannot remove it itself
        echo "$1: $([[ $2 == KILL ]] && echo killed || echo stopped)"
    fi
}

status() {
    local name pid leader
    for name in $(servers); do
        pid=-
        [[ -f $DIR/$name.pid ]] && kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null && pid=$(cat "$DIR/$name.pid")
        leader=$(ip netns exec "$(ns "$name")" curl -s -m 2 "$(ip_of "$name"):8500/v1/status/leader" 2>/dev/null || true)
        printf '%-4s %-14s pid %-8s leader %s\n' "$name" "$(ip_of "$name")" "$pid" "${leader:--}"
    done
}

down() {
    local name k
    for name in $(servers); do
        [[ -f $DIR/$name.pid ]] && kill -9 "$(cat "$DIR/$name.pid")" 2>/dev/null || true
        ip netns del "$(ns "$name")" 2>/dev/null || true   # takes its veth end with it
    done
    if [[ -f $DIR/count ]]; then
        for ((k = 1; k <= $(cat "$DIR/count"); k++)); do ip link del "${LAB}v$k" 2>/dev/null || true; done
    fi
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -rf "$DIR"
    echo "lab $LAB removed"
}

cmd=${1:-}
shift || true
case $cmd in
    up) up "$@" ;;
    down) down ;;
    status) status ;;
    start) start "${1:?usage: start NAME}" ;;
    stop) signal "${1:?usage: stop NAME}" TERM ;;            # Consul's server default: no leave
    kill) signal "${1:?usage: kill NAME}" KILL ;;
    pause) signal "${1:?usage: pause NAME}" STOP ;;
    resume) signal "${1:?usage: resume NAME}" CONT ;;
    wipe) name=${1:?usage: wipe NAME}; rm -rf "${DIR:?}/$name"; echo "$name: data dir removed" ;;
    partition) partition "$@" ;;
    heal) heal ;;
    exec) name=${1:?usage: exec NAME CMD...}; shift; exec ip netns exec "$(ns "$name")" "$@" ;;
    command) agent_cmd "${1:?usage: command NAME}" ;;
    *) die "usage: $0 up N | status | start|stop|kill|pause|resume|wipe NAME | partition G G... | heal | exec NAME CMD... | command NAME | down" ;;
esac
