#!/usr/bin/env bash
# Time from process start to the first answer of GET /v1/status, and resident memory after
# start, for `rivet-agent --standalone` on loopback. Prints one line per run and the medians.
#
#   bash bench/agent-startup.sh [RUNS]        (default 20; builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
cargo build --release -p rivet-agent --locked >&2
bin=target/release/rivet-agent
port=29999
times=() rss=() hwm=()
for i in $(seq 1 "$runs"); do
  start=$(date +%s%N)
  "$bin" --standalone --listen-host 127.0.0.1 --listen-port "$port" --agent-token bench >/dev/null 2>&1 &
  pid=$!
  # Poll as fast as curl allows, bounded to 10 s.
  for _ in $(seq 1 10000); do
    if curl -fs -o /dev/null "http://127.0.0.1:$port/v1/status"; then break; fi
  done
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000000 ))
  r=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
  h=$(awk '/^VmHWM/ {print $2}' /proc/$pid/status)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  times+=("$ms"); rss+=("$r"); hwm+=("$h")
  echo "run $i: first answer after ${ms} ms, VmRSS ${r} KiB, VmHWM ${h} KiB"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median over $runs runs: first answer $(median "${times[@]}") ms, VmRSS $(median "${rss[@]}") KiB, VmHWM $(median "${hwm[@]}") KiB"
echo "binary size: $(stat -c %s "$bin") bytes"
