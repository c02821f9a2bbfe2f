#!/usr/bin/env bash
# `just bench sip`: GB28181 signalling figures of the release `applianced` on this machine.
#   1. REGISTER with digest (REGISTER → 401 → REGISTER + MD5 digest → 200) driven by sipp at
#      increasing offered rates: achieved registrations/s and failures.
#   2. CPU and memory of the daemon while 10,000 simulated devices (applianced sim-device) keep
#      alive every 60 s, measured from /proc over one minute once all are registered.
# sipp and the daemon share this machine's cores; the figures are for both together.
set -euo pipefail
cd "$(dirname "$0")/.."
daemon=target/release/applianced
scenario=appliance/bench/sipp/register_digest.xml
ooc=appliance/bench/sipp/answer_requests.xml
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Starts a daemon in $work/$1; sets $pid, $sip_port and $http_port.
start_daemon() {
  local dir=$work/$1
  mkdir -p "$dir"
  APPLIANCE_HTTP__LISTEN=127.0.0.1:0 APPLIANCE_SIP__LISTEN=127.0.0.1:0 \
    APPLIANCE_SIP__PASSWORD=bench-secret RUST_LOG=info \
    "$daemon" run --data-dir "$dir/data" 2>"$dir/log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    grep -q "SIP listening" "$dir/log" 2>/dev/null && break
    sleep 0.1
  done
  sip_port=$(grep -o 'local_addr=127.0.0.1:[0-9]*' "$dir/log" | head -1 | cut -d: -f2)
  http_port=$(grep -o 'http_addr=127.0.0.1:[0-9]*' "$dir/log" | head -1 | cut -d: -f2)
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

echo "## GB28181 signalling: applianced $(git describe --always --dirty 2>/dev/null || echo dev)"
echo
echo "- machine: nproc $(nproc), $(uname -sr), sipp $(sipp -v 2>&1 | grep -o 'v[0-9.]*' | head -1)"
echo

start_daemon register
echo "| offered REGISTER rate | calls | achieved registrations/s | failed | target |"
echo "|---:|---:|---:|---:|---|"
local_port=$((20000 + RANDOM % 20000))
for rate in 2000 5000 8000; do
  calls=$((rate * 4))
  out=$(sipp -sf "$scenario" -oocsf "$ooc" -m "$calls" -r "$rate" -l 4000 -i 127.0.0.1 \
    -p "$local_port" -t u1 -nostdin -timeout 60s "127.0.0.1:$sip_port" 2>&1 || true)
  local_port=$((local_port + 1))
  ok=$(grep "Successful call" <<<"$out" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
  failed=$(grep "Failed call" <<<"$out" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
  secs=$(grep -A1 "Total-time" <<<"$out" | tail -1 | awk '{print $4}')
  achieved=$(awk -v n="$ok" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  echo "| $rate/s | $calls | $achieved | $failed | ≥ 5,000/s with 0 failures |"
done
echo

start_daemon keepalive
devices=10000
# One UDP socket per simulated device.
ulimit -n "$(ulimit -Hn)"
"$daemon" sim-device --platform "127.0.0.1:$sip_port" --password bench-secret --count "$devices" \
  --keepalive 60s --stagger 20s --duration 150s --channels 2 >"$work/sim.log" 2>&1 &
pids+=("$!")
for _ in $(seq 600); do
  online=$(curl -s "http://127.0.0.1:$http_port/api/v1/health" | grep -o '"devices_online":[0-9]*' | cut -d: -f2 || true)
  [ "${online:-0}" -ge "$devices" ] && break
  sleep 0.1
done
hz=$(getconf CLK_TCK)
before=$(cpu_ticks "$pid")
sleep 60
after=$(cpu_ticks "$pid")
cpu=$(awk -v d=$((after - before)) -v hz="$hz" 'BEGIN { printf "%.2f", 100 * d / hz / 60 }')
echo "| daemon with $devices devices keeping alive every 60 s | value | target |"
echo "|---|---:|---|"
echo "| devices online when measured | ${online:-0} | $devices |"
echo "| CPU over 60 s | $cpu % of one core | < 5 % |"
echo "| resident memory | $(rss_mib "$pid") MiB | |"
