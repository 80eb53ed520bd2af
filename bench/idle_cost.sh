#!/usr/bin/env bash
# Measures what an idle, initialized agent costs: CPU % of one core over SECONDS (default
# 30), read from /proc (utime + stime), for the agent on a throw-away store.
#   bench/idle_cost.sh [AGENT] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
AGENT=${1:-.build/release/datasource-agent}
[ -x "$AGENT" ] || AGENT=.build/debug/datasource-agent
SECONDS_IDLE=${2:-30}
STORE=$(mktemp -d)
trap 'rm -rf "$STORE"' EXIT
coproc AG { exec "$AGENT" --store "$STORE/store" 2>/dev/null; }
pid=$AG_PID
printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":'$$'}}' >&"${AG[1]}"
read -r _ <&"${AG[0]}"
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks); sleep "$SECONDS_IDLE"; t1=$(ticks)
python3 -c "print(f'idle agent: {($t1 - $t0) / $(getconf CLK_TCK) / $SECONDS_IDLE * 100:.3f} % of a core over $SECONDS_IDLE s ($AGENT)')"
kill "$pid"
