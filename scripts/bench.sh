#!/usr/bin/env bash
# Side-by-side benchmark (issue 24): ComfyUI directly (the embedded simulator, `comfyhost
# simulate-comfyui`), nginx configured as the usual ComfyUI reverse proxy (keep-alive upstream,
# WebSocket upgrade) and comfyhost (`--attach`, the five first-party plugins staged), all in
# front of the same simulator. Rows are run target after target, repetition after repetition
# (interleaved), and the table prints the median of the repetitions with ratios.
#
# HTTP rows use wrk; the rest (WebSocket fan-out and idle memory, POST /prompt latency, RSS,
# time to liveness) use the `comfyhost-bench` binary (tests/bench).
#
# Usage: scripts/bench.sh [--quick]
#   --quick   one repetition, shorter runs, fewer sockets (a smoke run, about a minute)
# Env: CARGO_TARGET_DIR (honoured), BENCH_PLUGINS_DIR (staged plugins to use instead of
# building them with docker/build-plugins.sh), BENCH_NO_BUILD=1 (use the binaries as built),
# BENCH_HOST_BIN (another comfyhost binary to measure, e.g. a build of an earlier commit).
# Installs nginx and wrk from Debian when missing (apt-get; sudo when not root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0
[ "${1:-}" = "--quick" ] && quick=1
if [ $quick = 1 ]; then
  REPS=1 DUR=2s IDLE_WAIT=5 SOCKETS=200 PROMPTS=100 STEPS=300
else
  REPS=3 DUR=5s IDLE_WAIT=30 SOCKETS=1000 PROMPTS=300 STEPS=1500
fi

# --- tools -------------------------------------------------------------------------------
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "bench: installing ${need[*]} from Debian" >&2
  $sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${need[@]}" >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

target_dir=${CARGO_TARGET_DIR:-$root/target}
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  cargo build --release -p comfyhost -p comfyhost-bench --bin comfyhost --bin comfyhost-bench >&2
fi
HOST_BIN=${BENCH_HOST_BIN:-$target_dir/release/comfyhost}
BENCH_BIN=$target_dir/release/comfyhost-bench

work=$(mktemp -d /tmp/comfyhost-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${BENCH_PLUGINS_DIR:-}" ]; then
  plugins=$BENCH_PLUGINS_DIR
else
  plugins=$work/plugins
  bash docker/build-plugins.sh "$plugins" >&2
fi
mkdir -p "$work/no-plugins"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

SIM_PORT=18288 NGINX_PORT=18289 HOST_PORT=18290 HOST_OFF_PORT=18291 START_PORT=18292
declare -A BASE=(
  [direct]=http://127.0.0.1:$SIM_PORT
  [nginx]=http://127.0.0.1:$NGINX_PORT
  [comfyhost]=http://127.0.0.1:$HOST_PORT
  [comfyhost-off]=http://127.0.0.1:$HOST_OFF_PORT
)
declare -A PIDS

wait_for() { # URL
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: $1 never answered" >&2
  return 1
}

# --- the simulator (ComfyUI) --------------------------------------------------------------
mkdir -p "$work"/{output,input,user,temp,models/checkpoints}
echo "not a model" >"$work/models/checkpoints/sim.safetensors"
head -c 1048576 /dev/urandom >"$work/output/bench1m.png"
"$HOST_BIN" simulate-comfyui --port $SIM_PORT --sim-node-delay-ms 0 --preview-method none \
  --sim-models-dir "$work/models" --output-directory "$work/output" --input-directory "$work/input" \
  --user-directory "$work/user" --temp-directory "$work/temp" >"$work/sim.log" 2>&1 &
pids+=($!) PIDS[direct]=$!
wait_for "${BASE[direct]}/system_stats"

# --- nginx, the usual ComfyUI reverse proxy ---------------------------------------------
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  upstream comfyui { server 127.0.0.1:$SIM_PORT; keepalive 64; }
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    client_max_body_size 100m;
    location / {
      proxy_pass http://comfyui;
      proxy_http_version 1.1;
      proxy_set_header Host \$host;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }
  }
}
EOF
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>>"$work/nginx/logs/error.log" &
pids+=($!) PIDS[nginx]=$!
wait_for "${BASE[nginx]}/system_stats"

# --- comfyhost, with the first-party plugins and with none --------------------------------
host_args() { # PORT DATA_DIR PLUGINS_DIR
  echo run --listen "127.0.0.1:$1" --data-dir "$2" --plugins-dir "$3" \
    --attach "${BASE[direct]}" --admin-token bench-admin-token-0123456789
}
# shellcheck disable=SC2046
"$HOST_BIN" $(host_args $HOST_PORT "$work/host" "$plugins") >"$work/host.log" 2>&1 &
pids+=($!) PIDS[comfyhost]=$!
# shellcheck disable=SC2046
"$HOST_BIN" $(host_args $HOST_OFF_PORT "$work/host-off" "$work/no-plugins") >"$work/host-off.log" 2>&1 &
pids+=($!) PIDS[comfyhost-off]=$!
wait_for "${BASE[comfyhost]}/comfyhost/api/ready"
wait_for "${BASE[comfyhost-off]}/comfyhost/api/ready"
started=$(date +%s)

results=$work/results.tsv
: >"$results"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }
proc_pids() { # TARGET: the process and its children (nginx workers)
  local p=${PIDS[$1]}
  echo "$p $(pgrep -P "$p" | tr '\n' ' ')"
}

# Idle first (nothing has run through the proxies yet).
sleep $((IDLE_WAIT - ($(date +%s) - started) > 0 ? IDLE_WAIT - ($(date +%s) - started) : 0))
for t in direct nginx comfyhost comfyhost-off; do
  record "idle RSS after ${IDLE_WAIT} s, MB" "$t" "$("$BENCH_BIN" rss --pids "$(proc_pids $t | tr ' ' ',' | sed 's/,*$//')")"
done
# One pass each: freed memory is kept by the allocators, so a second pass would read low.
for t in direct nginx comfyhost; do
  record "memory per idle WebSocket ($SOCKETS open), KB" "$t" \
    "$("$BENCH_BIN" ws-idle --base "${BASE[$t]}" --sockets "$SOCKETS" --pids "$(proc_pids $t | tr ' ' ',' | sed 's/,*$//')")"
  sleep 1
done

wrk_rps() { # CONNS URL
  local threads=$(($1 < 2 ? 1 : 2))
  wrk -t"$threads" -c"$1" -d"$DUR" "$2" | awk '/Requests\/sec/ {print $2}'
}
for rep in $(seq 1 "$REPS"); do
  echo "bench: repetition $rep/$REPS" >&2
  for t in direct nginx comfyhost; do
    record "GET /system_stats, 1 conn, req/s" "$t" "$(wrk_rps 1 "${BASE[$t]}/system_stats")"
  done
  for t in direct nginx comfyhost; do
    record "GET /object_info, 16 conns, req/s" "$t" "$(wrk_rps 16 "${BASE[$t]}/object_info")"
  done
  for t in direct nginx comfyhost; do
    record "GET /view 1 MB, 16 conns, req/s" "$t" \
      "$(wrk_rps 16 "${BASE[$t]}/view?filename=bench1m.png&type=output")"
  done
  for t in direct nginx comfyhost; do
    record "WS frames/s to 32 browsers" "$t" \
      "$("$BENCH_BIN" ws-fanout --base "${BASE[$t]}" --clients 32 --steps "$STEPS")"
  done
  for t in direct nginx comfyhost-off comfyhost; do
    record "POST /prompt sequential p50, ms" "$t" "$("$BENCH_BIN" prompt --base "${BASE[$t]}" --n "$PROMPTS")"
  done
done

# Time from exec to liveness: a first start (empty data dir: plugins compiled) and a later
# start (same data dir: compiled plugins cached).
for rep in $(seq 1 "$REPS"); do
  dir=$work/start-$rep
  for kind in first later; do
    # shellcheck disable=SC2046
    read -r live ready < <("$BENCH_BIN" startup --base "http://127.0.0.1:$START_PORT" -- \
      "$HOST_BIN" $(host_args $START_PORT "$dir" "$plugins"))
    record "liveness after exec, $kind start, ms" comfyhost "$live"
    record "readiness after exec, $kind start, ms" comfyhost "$ready"
  done
done

python3 - "$results" "$quick" <<'EOF'
import sys, statistics, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    row, target, value = line.rstrip("\n").split("\t")
    try:
        v = float(value)
    except ValueError:
        continue
    rows.setdefault(row, collections.defaultdict(list))[target].append(v)
lower_better = ("ms", "MB", "KB")
def fmt(v):
    return "—" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}")
print("| | direct | nginx | comfyhost (plugins off) | comfyhost | comfyhost / nginx | comfyhost / direct |")
print("|---|---|---|---|---|---|---|")
for row, by in rows.items():
    med = {t: statistics.median(v) if v else None for t, v in by.items()}
    d, n, off, h = (med.get(k) for k in ("direct", "nginx", "comfyhost-off", "comfyhost"))
    ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "—"
    note = " (lower is better)" if row.endswith(lower_better) else ""
    print(f"| {row}{note} | {fmt(d)} | {fmt(n)} | {fmt(off)} | {fmt(h)} | {ratio(h, n)} | {ratio(h, d)} |")
reps = max(len(v) for by in rows.values() for v in by.values())
print(f"\nmedian of {reps} interleaved repetition(s){' (--quick)' if sys.argv[2] == '1' else ''}")
EOF
