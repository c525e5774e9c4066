"""A fake ComfyUI for supervisor tests. Behaviour comes from environment variables:

FAKE_DELAY_S        seconds to wait before listening (default 0)
FAKE_NEVER_LISTEN   "1": never open the port
FAKE_EXIT_CODE      exit with this code after FAKE_EXIT_AFTER_S (default 0.05 s) instead of serving
FAKE_CRASH_COUNTER  path of a counter file: crash (FAKE_EXIT_CODE) while the counter < FAKE_CRASH_TIMES
FAKE_IGNORE_TERM    "1": ignore SIGTERM
FAKE_GRANDCHILD_PID path: spawn `sleep 1000` in our process group and write its pid there
FAKE_NOT_COMFY      "1": answer /system_stats with a non-ComfyUI body
"""
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

argv = sys.argv[1:]
port = int(argv[argv.index("--port") + 1])
env = os.environ.get

print(f"fake ComfyUI pid {os.getpid()} argv {' '.join(argv)}", flush=True)
print("Total VRAM 24106 MB, total RAM 24106 MB", file=sys.stderr, flush=True)

if env("FAKE_IGNORE_TERM") == "1":
    signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", file=sys.stderr, flush=True))
else:
    def on_term(*_):
        print("got SIGTERM, exiting", file=sys.stderr, flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)

if env("FAKE_GRANDCHILD_PID"):
    child = subprocess.Popen(["sleep", "1000"])
    with open(env("FAKE_GRANDCHILD_PID"), "w") as f:
        f.write(str(child.pid))

crash = env("FAKE_EXIT_CODE") is not None
if env("FAKE_CRASH_COUNTER"):
    path = env("FAKE_CRASH_COUNTER")
    count = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(count + 1))
    crash = count < int(env("FAKE_CRASH_TIMES", "1"))

if crash:
    time.sleep(float(env("FAKE_EXIT_AFTER_S", "0.05")))
    print(f"Traceback: fake crash, exiting with {env('FAKE_EXIT_CODE', '3')}", file=sys.stderr, flush=True)
    sys.exit(int(env("FAKE_EXIT_CODE", "3")))

time.sleep(float(env("FAKE_DELAY_S", "0")))
if env("FAKE_NEVER_LISTEN") == "1":
    print("loading custom nodes forever", file=sys.stderr, flush=True)
    while True:
        time.sleep(1)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/system_stats":
            self.send_response(404)
            self.end_headers()
            return
        if env("FAKE_NOT_COMFY") == "1":
            body = b'{"hello": "world"}'
        else:
            body = json.dumps({
                "system": {"os": "posix", "comfyui_version": "0.3.64-fake", "argv": ["main.py"] + argv},
                "devices": [],
            }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("Starting server", file=sys.stderr, flush=True)
print(f"To see the GUI go to: http://127.0.0.1:{port}", file=sys.stderr, flush=True)
try:
    server.serve_forever()
except SystemExit:
    raise
