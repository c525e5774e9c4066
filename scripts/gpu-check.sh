#!/usr/bin/env bash
# GPU check: what comfyhost detects and decides on this machine, and (when a ComfyUI tree is
# carried along) whether ComfyUI runs on the GPU with the chosen flags and confirms them.
#
# Run from the repository root with a release binary built elsewhere:
#
#   COMFYHOST_BIN=./comfyhost bash scripts/gpu-check.sh
#
# Environment (all optional):
#   COMFYHOST_BIN     the comfyhost binary (default: target/release/comfyhost, then ./comfyhost)
#   PYTHON            the Python with torch (default: python3)
#   COMFYUI_DIR       a ComfyUI source tree (contains main.py); step 2 runs only with it
#   WHEELS_DIR        wheels for what ComfyUI needs and the image lacks; installed offline
#                     (pip --no-index) into a venv that sees the system's torch
#   GPU_CHECK_BUDGET  seconds for the whole run (default 280, under 5 minutes)
#
# Steps: 1. `comfyhost gpu --json --sources` (NVML and nvidia-smi side by side, the probe, the
# decision and its reasons); 2. the host supervising that ComfyUI with the chosen flags, one
# no-model workflow through the host, the confirmation read back from ComfyUI's log, and the
# System page's GPU readings; 3. what could not be checked and why. Without an NVIDIA GPU it
# says so, prints the CPU-mode report, and exits 0. Exit 1 only when a check that could run
# failed.
set -uo pipefail

started=$SECONDS
budget=${GPU_CHECK_BUDGET:-280}
python=${PYTHON:-python3}
not_checked=()
failed=0

say() { printf '\n=== %s\n' "$*"; }
skip() { not_checked+=("$*"); }
left() { echo $((budget - (SECONDS - started))); }

bin=${COMFYHOST_BIN:-}
if [ -z "$bin" ]; then
  for c in target/release/comfyhost ./comfyhost; do
    if [ -x "$c" ]; then bin=$c; break; fi
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "gpu-check: no comfyhost binary (set COMFYHOST_BIN, or build with cargo build --release)" >&2
  exit 2
fi
if ! command -v "$python" >/dev/null 2>&1; then
  echo "gpu-check: $python not found (set PYTHON)" >&2
  exit 2
fi

say "machine"
echo "comfyhost: $("$bin" --version 2>&1)"
echo "python:    $("$python" --version 2>&1) ($(command -v "$python"))"
echo "kernel:    $(uname -srm)"

gpu=no
if command -v nvidia-smi >/dev/null 2>&1; then
  if smi=$(timeout 20 nvidia-smi 2>&1); then
    gpu=yes
    printf '%s\n' "$smi" | head -n 12
  else
    echo "nvidia-smi is installed but failed:"
    printf '%s\n' "$smi" | head -n 3
  fi
else
  echo "nvidia-smi: not installed"
fi
if [ "$gpu" = no ]; then
  echo "No NVIDIA GPU on this machine: the CPU path only."
  skip "everything on a GPU: no NVIDIA GPU here (nvidia-smi missing or failing)"
fi

# ----- 1. detection, probe, decision -------------------------------------------------------------
say "1. comfyhost gpu --json --sources (python: $python)"
comfy_dir=${COMFYUI_DIR:-.}
report_file=$(mktemp)
t0=$SECONDS
if timeout "$(left)" "$bin" gpu --json --sources --python "$python" --comfyui-dir "$comfy_dir" \
  >"$report_file" 2>/dev/null; then
  cat "$report_file"
  echo "(report in $((SECONDS - t0)) s)"
  "$python" - "$report_file" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
inv, d = r["inventory"], r["decision"]
print(f"summary: source={inv['source']} gpus={[g['name'] for g in inv['gpus']]} "
      f"sm={[str(g['sm']['major']) + '.' + str(g['sm']['minor']) if g['sm'] else None for g in inv['gpus']]} "
      f"driver={inv['driver_version']} cuda={inv['cuda_driver_version']}")
print(f"decision: {d.get('choice')} flags={d.get('flags')} refusal={d.get('refusal')}")
for why in d.get("reasons", []):
    print(f"  reason: {why}")
src = r.get("sources", {})
a, b = src.get("nvml", {}), src.get("nvidia_smi", {})
if a.get("inventory") and b.get("inventory"):
    same = a["inventory"]["gpus"] == b["inventory"]["gpus"]
    print(f"NVML and nvidia-smi agree on the GPUs: {same}")
    if not same:
        print("  NVML:      ", a["inventory"]["gpus"])
        print("  nvidia-smi:", b["inventory"]["gpus"])
PY
else
  echo "comfyhost gpu failed or ran out of time"
  failed=1
fi
[ "$comfy_dir" = . ] && skip "flags accepted by main.py --help: no COMFYUI_DIR"

# ----- 2. ComfyUI on the GPU through the host -----------------------------------------------------
host_pid=
data_dir=
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
  if [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; then
    kill -TERM "$host_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$host_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$host_pid" 2>/dev/null
  fi
  rm -f "$report_file"
  [ -n "$data_dir" ] && rm -rf "$data_dir"
}
trap cleanup EXIT

if [ "$gpu" = no ]; then
  skip "ComfyUI on the GPU and its confirmation: no GPU"
elif [ -z "${COMFYUI_DIR:-}" ] || [ ! -f "${COMFYUI_DIR:-}/main.py" ]; then
  skip "ComfyUI on the GPU and its confirmation: no ComfyUI tree (set COMFYUI_DIR to a carried checkout)"
else
  say "2. the host supervising ComfyUI on the GPU"
  data_dir=$(mktemp -d)
  run_python=$python
  if [ -n "${WHEELS_DIR:-}" ]; then
    echo "installing ComfyUI's missing requirements offline from $WHEELS_DIR"
    "$python" -m venv --system-site-packages "$data_dir/venv" &&
      timeout "$(left)" "$data_dir/venv/bin/python" -m pip install -q --no-index \
        --find-links "$WHEELS_DIR" -r "$COMFYUI_DIR/requirements.txt" &&
      run_python=$data_dir/venv/bin/python ||
      echo "offline install failed; trying with $python as it is"
  fi
  token='gpu-check-admin-token-0123456789'
  port=$(( (RANDOM % 2000) + 28000 ))
  "$bin" run --listen "127.0.0.1:$port" --comfyui-port $((port + 1)) --data-dir "$data_dir/host" \
    --comfyui-dir "$COMFYUI_DIR" --python "$run_python" --admin-token "$token" \
    --system-sample-ms 2000 --startup-timeout "$(( $(left) > 30 ? $(left) - 30 : 10 ))" \
    >"$data_dir/host.log" 2>&1 &
  host_pid=$!
  export GPU_CHECK_BASE="http://127.0.0.1:$port" GPU_CHECK_TOKEN=$token
  if timeout "$(left)" "$python" - <<'PY'
import json, os, sys, time, urllib.request
base, token = os.environ["GPU_CHECK_BASE"], os.environ["GPU_CHECK_TOKEN"]
def call(path, body=None, auth=True):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    if auth:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read().decode()
        return json.loads(raw) if raw.startswith(("{", "[")) else raw
def wait(what, pred, limit):
    end = time.time() + limit
    while time.time() < end:
        try:
            v = pred()
            if v:
                return v
        except Exception:
            pass
        time.sleep(1)
    raise SystemExit(f"timed out waiting for {what}")
t0 = time.time()
st = wait("the host", lambda: call("/comfyhost/api/comfyui"), 60)
st = wait("ComfyUI ready", lambda: (s := call("/comfyhost/api/comfyui"))["state"] in ("ready", "failed") and s, 240)
print(f"ComfyUI {st['state']} after {time.time() - t0:.0f} s: {st.get('command_line_shell')}")
if st["state"] != "ready":
    print("\n".join(str(l) for l in st.get("last_lines", [])[-20:]))
    raise SystemExit(1)
wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
      "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "gpu-check"}}}
pid = call("/prompt", {"prompt": wf, "client_id": "gpu-check"}, auth=False)["prompt_id"]
job = wait("the workflow", lambda: (j := call(f"/comfyhost/api/jobs/{pid}"))["status"] not in ("queued", "running") and j, 60)
print(f"workflow {pid}: {job['status']}")
g = call("/comfyhost/api/gpu")
print("decision:", json.dumps(g["decision"].get("flags")), g["decision"].get("choice"))
print("confirmation:", json.dumps(g.get("confirmation"), indent=2))
sysv = call("/comfyhost/api/system")
cur = sysv.get("current") or {}
print("GPU readings (NVML):", json.dumps(cur.get("gpus")), cur.get("gpu_error") or "")
print("ComfyUI process tree:", json.dumps(cur.get("comfyui")))
metrics = call("/metrics")
print("\n".join(l for l in metrics.splitlines() if l.startswith("comfyhost_gpu_")))
logs = call("/comfyhost/api/comfyui/logs?limit=400")
lines = [l.get("line") or l.get("text") or "" for l in logs.get("lines", logs.get("entries", []))]
print("ComfyUI log lines about attention / device:")
for l in lines:
    if any(k in l.lower() for k in ("attention", "device:", "vram", "pytorch version")):
        print("  " + l)
ok = job["status"] == "succeeded" and (g.get("confirmation") or {}).get("status") == "confirmed"
sys.exit(0 if ok else 1)
PY
  then
    echo "step 2: ok"
  else
    echo "step 2: FAILED; last host output:"
    tail -n 40 "$data_dir/host.log"
    failed=1
  fi
fi

# ----- 3. what was not checked ---------------------------------------------------------------------
say "3. not checked"
if [ "${#not_checked[@]}" -eq 0 ]; then
  echo "(nothing: every step ran)"
else
  printf -- '- %s\n' "${not_checked[@]}"
fi
echo "gpu-check finished in $((SECONDS - started)) s"
exit "$failed"
