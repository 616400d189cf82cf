#!/usr/bin/env bash
# Raw image write throughput of rivet-agent against `dd bs=4M oflag=direct`, to the same loop
# device in the same run, and the agent's peak RSS while writing; then the same disk as a qcow2
# file, converted while streaming, with its peak RSS.
#
#   sudo bash bench/image-write.sh [IMAGE_MiB]     (default 1024; needs root for losetup)
#
# The image is served over loopback HTTP by python3's http.server; the agent streams, hashes
# (SHA-256) and writes it through its device allowlist. dd copies the same file from the page
# cache. Everything the script creates is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
cargo build --release -p rivet-agent --locked >&2
work=$(mktemp -d)
loop=""; http_pid=""; agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  [ -n "$http_pid" ] && kill "$http_pid" 2>/dev/null || true
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
head -c $((mib << 20)) /dev/urandom > "$work/disk.raw"
sum=$(sha256sum "$work/disk.raw" | cut -d' ' -f1)
truncate -s $(((mib + 64) << 20)) "$work/backing"
loop=$(losetup --find --show "$work/backing")
port=28088
(cd "$work" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) & http_pid=$!
sleep 1

start=$(date +%s%N)
dd if="$work/disk.raw" of="$loop" bs=4M oflag=direct status=none
dd_ns=$(( $(date +%s%N) - start ))

# One fresh agent per write, so each peak RSS (VmHWM) belongs to one image.
agent_write() { # file format -> sets agent_ns, hwm
  local file=$1 format=$2 sum body result
  sum=$(sha256sum "$work/$file" | cut -d' ' -f1)
  ./target/release/rivet-agent --standalone --listen-host 127.0.0.1 --listen-port 29998 --agent-token bench \
    --disk-allow "$loop" --hardware-managers-dir /nonexistent >/dev/null 2>&1 & agent_pid=$!
  sleep 1
  body=$(printf '{"name": "deploy.execute_deploy_step", "params": {"step": {"interface": "deploy", "step": "write_image", "args": {"image_info": {"id": "%s", "urls": ["http://127.0.0.1:%s/%s"], "disk_format": "%s", "os_hash_algo": "sha256", "os_hash_value": "%s"}, "configdrive": null}}, "node": {"uuid": "bench", "properties": {"root_device": {"name": "%s"}}}, "ports": []}}' "$file" "$port" "$file" "$format" "$sum" "$loop")
  local start=$(date +%s%N)
  result=$(curl -fs -X POST "http://127.0.0.1:29998/v1/commands/?wait=true&agent_token=bench" -d "$body")
  agent_ns=$(( $(date +%s%N) - start ))
  hwm=$(awk '/^VmHWM/ {print $2}' /proc/$agent_pid/status)
  kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""
  echo "$result" | grep -q '"SUCCEEDED"' || { echo "agent write of $file failed: $result" >&2; exit 1; }
  cmp -n $((mib << 20)) "$work/disk.raw" "$loop" || { echo "written $file differs from disk.raw" >&2; exit 1; }
}

agent_write disk.raw raw
awk -v mib="$mib" -v d="$dd_ns" -v a="$agent_ns" -v hwm="$hwm" 'BEGIN {
  dd_rate = mib / (d / 1e9); agent_rate = mib / (a / 1e9);
  printf "raw %d MiB: dd bs=4M oflag=direct %.0f MiB/s (%.2f s); rivet-agent (HTTP + SHA-256 + write) %.0f MiB/s (%.2f s); ratio %.2f; agent VmHWM %d KiB\n",
    mib, dd_rate, d / 1e9, agent_rate, a / 1e9, agent_rate / dd_rate, hwm }'

# The same disk as qcow2 (random data does not compress: the file is as large as the disk).
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
dd if=/dev/zero of="$loop" bs=4M count=$((mib / 4)) oflag=direct status=none
agent_write disk.qcow2 qcow2
qsize=$(stat -c %s "$work/disk.qcow2")
awk -v q="$qsize" -v a="$agent_ns" -v hwm="$hwm" 'BEGIN {
  printf "qcow2 %d MiB file: rivet-agent (HTTP + SHA-256 + convert + write) %.0f MiB/s (%.2f s); agent VmHWM %d KiB; file / peak RSS = %.0fx\n",
    q / 1048576, q / 1048576 / (a / 1e9), a / 1e9, hwm, q / 1024 / hwm }'
