#!/usr/bin/env python3
"""Record what a real ComfyUI 0.33.0 answers on the routes the current profile of comfy-sim
imitates (jobs API, cancel endpoints, prompt_id rules, newer routes, feature flags).

Written for comfyhost after /work/shared/comfyui-transcripts/record.py. Run a real 0.33.0 (see
/work/shared/REAL_COMFYUI.md, last section) with
`--extra-model-paths-config tests/execution/extra_model_paths.yaml` (TestSleep), then:

    COMFY_BASE=http://127.0.0.1:8233 OUT=tests/comfy-sim/recordings/0.33.0 python3 record.py

Every file is one small JSON document: {"request", "status", "content_type", "body"}; WebSocket
captures are {"messages": [...]} with text messages only.
"""
import asyncio
import json
import os
import uuid

import aiohttp

BASE = os.environ.get("COMFY_BASE", "http://127.0.0.1:8188")
WSBASE = BASE.replace("http://", "ws://")
OUT = os.environ.get("OUT", "recordings/0.33.0")
os.makedirs(OUT, exist_ok=True)

PROBE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "probe"}},
}


def sleep_prompt(seconds):
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 1}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "tp_long"}},
    }


def save(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=1)
    print("saved", name)


async def http(s, method, path, body=None, raw=None, name=None):
    kwargs = {}
    if body is not None:
        kwargs["json"] = body
    if raw is not None:
        kwargs["data"] = raw
        kwargs["headers"] = {"Content-Type": "application/json"}
    async with s.request(method, BASE + path, **kwargs) as r:
        data = await r.read()
        try:
            parsed = json.loads(data) if data else None
        except Exception:
            parsed = data.decode("utf-8", "replace")
        rec = {"request": {"method": method, "path": path}, "status": r.status,
               "content_type": r.headers.get("Content-Type"), "body": parsed}
        if body is not None:
            rec["request"]["json"] = body
        if raw is not None:
            rec["request"]["raw_body"] = raw
    if name:
        save(name, rec)
    return rec


async def wait_job(s, pid, statuses, timeout=60):
    for _ in range(int(timeout * 10)):
        rec = await http(s, "GET", f"/api/jobs/{pid}")
        if rec["status"] == 200 and rec["body"].get("status") in statuses:
            return rec
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{pid} never reached {statuses}")


async def main():
    async with aiohttp.ClientSession() as s:
        for path, name in [
            ("/system_stats", "get_system_stats.json"),
            ("/features", "get_features.json"),
            ("/api/node_replacements", "get_node_replacements.json"),
            ("/api/global_subgraphs", "get_global_subgraphs.json"),
            ("/api/assets", "get_assets_disabled.json"),
            ("/api/v2/userdata", "get_v2_userdata.json"),
            ("/internal/logs/raw", "get_internal_logs_raw.json"),
            ("/api/experiment/models", "get_experiment_models.json"),
            ("/api/jobs?status=bogus", "jobs_invalid_status.json"),
            ("/api/jobs?sort_by=name", "jobs_bad_sort_by.json"),
            ("/api/jobs?sort_order=up", "jobs_bad_sort_order.json"),
            ("/api/jobs?limit=0", "jobs_limit_zero.json"),
            ("/api/jobs?limit=x", "jobs_limit_not_int.json"),
            ("/api/jobs?offset=x", "jobs_offset_not_int.json"),
            ("/api/jobs", "jobs_empty.json"),
            (f"/api/jobs/{uuid.uuid4()}", "job_not_found.json"),
        ]:
            await http(s, "GET", path, name=name)
        await http(s, "POST", f"/api/jobs/{uuid.uuid4()}/cancel", name="cancel_unknown.json")
        await http(s, "POST", "/api/jobs/cancel", {"job_ids": ["nope", 3, str(uuid.uuid4()).upper()]},
                   name="cancel_batch_invalid_ids.json")
        await http(s, "POST", "/api/jobs/cancel", {"job_ids": "x"}, name="cancel_batch_not_list.json")
        await http(s, "POST", "/api/jobs/cancel", raw="{nope", name="cancel_batch_bad_json.json")
        await http(s, "POST", "/api/jobs/cancel", {"job_ids": [str(uuid.uuid4())]},
                   name="cancel_batch_unknown.json")
        for pid, name in [(str(uuid.uuid4()).upper(), "err_prompt_id_uppercase.json"),
                          ("my-job-1", "err_prompt_id_not_uuid.json"),
                          (str(uuid.uuid4()).replace("-", ""), "err_prompt_id_unhyphenated.json"),
                          (7, "err_prompt_id_number.json")]:
            await http(s, "POST", "/prompt", {"prompt": PROBE, "prompt_id": pid}, name=name)

        # WebSocket: feature_flags handshake.
        cid = uuid.uuid4().hex
        ws = await s.ws_connect(f"{WSBASE}/ws?clientId={cid}")
        await ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        msgs = []
        for _ in range(2):
            m = await ws.receive(timeout=10)
            msgs.append(json.loads(m.data))
        save("ws_feature_flags.json", {"messages": msgs})

        # A successful run, listed and fetched by id.
        pid = str(uuid.uuid4())
        await http(s, "POST", "/prompt", {"prompt": PROBE, "prompt_id": pid, "client_id": cid,
                                           "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-1"}}}},
                   name="run_post_prompt.json")
        await wait_job(s, pid, {"completed"})
        await http(s, "GET", f"/api/jobs/{pid}", name="job_completed.json")
        await http(s, "GET", "/api/jobs", name="jobs_after_run.json")
        await http(s, "GET", "/api/jobs?workflow_id=wf-1&status=completed&limit=1", name="jobs_filtered.json")
        await http(s, "POST", f"/api/jobs/{pid}/cancel", name="cancel_terminal.json")

        # Cancel: one running (batch), one pending (by id).
        running, pending = str(uuid.uuid4()), str(uuid.uuid4())
        await http(s, "POST", "/prompt", {"prompt": sleep_prompt(5.0), "prompt_id": running, "client_id": cid})
        await wait_job(s, running, {"in_progress"})
        await http(s, "POST", "/prompt", {"prompt": sleep_prompt(5.1), "prompt_id": pending, "client_id": cid})
        await http(s, "GET", f"/api/jobs/{running}", name="job_in_progress.json")
        await http(s, "GET", f"/api/jobs/{pending}", name="job_pending.json")
        await http(s, "GET", "/api/jobs?status=pending,in_progress&sort_order=asc", name="jobs_active.json")
        await http(s, "POST", f"/api/jobs/{pending}/cancel", name="cancel_pending.json")
        await http(s, "POST", "/api/jobs/cancel", {"job_ids": [running]}, name="cancel_running_batch.json")
        await wait_job(s, running, {"cancelled"})
        await http(s, "GET", f"/api/jobs/{running}", name="job_cancelled.json")
        await http(s, "GET", f"/api/jobs/{pending}", name="job_pending_after_cancel.json")
        msgs = []
        while True:
            try:
                m = await ws.receive(timeout=1.0)
            except asyncio.TimeoutError:
                break
            if m.type == aiohttp.WSMsgType.TEXT:
                msgs.append(json.loads(m.data))
            elif m.type == aiohttp.WSMsgType.BINARY:
                msgs.append({"binary_type": int.from_bytes(m.data[:4], "big"), "len": len(m.data)})
            else:
                break
        save("ws_run_and_cancels.json", {"messages": msgs})
        await ws.close()


asyncio.run(main())
