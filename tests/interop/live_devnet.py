#!/usr/bin/env python3
"""Drive the official Livepeer Python SDK's live-runner API against a devnet orchestrator.

Two modes, each printing one JSON object as its last stdout line:

  runner --orch URL --runner-base URL --secret S
      Registers a runner written with the SDK (``register_runner``, o2r callbacks) whose
      ``POST /echo`` creates ``in``/``out`` channels with ``create_trickle_channels``; then,
      as a client, finds it in ``/discovery``, reserves a session (``reserve_session``),
      calls ``{app_url}/echo`` (``call_runner``), stops the session and unregisters.

  scope --orch URL [--signer URL]
      ``start_scope`` against the devnet (offchain, or paying through the signer), then the
      real Scope runner's sequence over the job's control and events channels, each answer
      matched by ``request_id``: ``runner_ready``, ``ping`` → ``pong``, ``start_stream``
      refused before a pipeline is loaded, ``api`` load of ``gray`` and status polling to
      ``loaded``, ``start_stream`` with the linear graph → ``stream_started`` with ``in`` and
      ``out`` channels, ``stop_stream`` → ``stream_stopped``.

Exit status 0 with {"ok": true, ...}; on failure 1 with {"ok": false, "error": ...}.
"""

import argparse
import asyncio
import json
import sys
import urllib.request

from aiohttp import web

from livepeer_gateway import (
    StartJobRequest,
    call_runner,
    create_trickle_channels,
    register_runner,
    reserve_session,
    start_scope,
    stop_runner_session,
)

APP = "live-video-to-video/sdk-echo"


async def wait_for(pred, timeout):
    async def loop():
        while not pred():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), timeout)


async def runner_mode(args, out):
    echoes = []

    async def echo(request: web.Request) -> web.Response:
        channels = await create_trickle_channels(
            request,
            [{"name": "in", "mime_type": "video/MP2T"}, {"name": "out", "mime_type": "video/MP2T"}],
        )
        echoes.append([c["name"] for c in channels])
        urls = {c["name"]: c["url"] for c in channels}
        return web.json_response(
            {"session": request.headers.get("Livepeer-Session-Id", ""), "in": urls["in"], "out": urls["out"]}
        )

    app = web.Application()
    app.router.add_post("/echo", echo)
    site_runner = web.AppRunner(app)
    await site_runner.setup()
    site = web.TCPSite(site_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    events = []
    registration = await register_runner(
        args.runner_base,
        secret=args.secret,
        runner_url=f"http://127.0.0.1:{port}",
        app=APP,
        price=10,
        capacity=1,
        auto_detect_gpu=False,
        on_session_reserve=lambda ev: events.append(["reserved", ev.session_id]),
        on_session_release=lambda ev: events.append(["released", ev.session_id]),
    )
    try:
        out["runner_id"] = registration.runner_id
        with urllib.request.urlopen(f"{args.orch}/discovery", timeout=5) as r:
            disc = json.loads(r.read())
        listed = [x for x in disc[0].get("runners", []) if x.get("app") == APP]
        out["discovery"] = listed
        session = await reserve_session(orchestrators=[args.orch], app=APP, timeout=5)
        out["session_id"] = session.session_id
        out["app_url"] = session.app_url
        res = await call_runner(f"{session.app_url}/echo", payload={}, timeout=5)
        out["echo"] = res.data
        await wait_for(lambda: any(e[0] == "reserved" for e in events), 5)
        await stop_runner_session(session)
        await wait_for(lambda: any(e[0] == "released" for e in events), 5)
        out["events"] = events
        out["echo_channels"] = echoes
    finally:
        await registration.close()
        await site_runner.cleanup()


async def scope_mode(args, out):
    job = await start_scope(
        args.orch,
        StartJobRequest(model_id="scope", params={"prompt": "interop"}),
        signer_url=args.signer,
        timeout=10,
    )
    out["job"] = {
        "manifest_id": job.manifest_id,
        "control_url": job.control_url,
        "events_url": job.events_url,
        "publish_url": job.publish_url,
    }
    seen = []

    async def collect():
        async for ev in job.events(start_seq=0):
            if isinstance(ev, dict):
                seen.append(ev)

    reader = asyncio.create_task(collect())

    async def answer(pred, start=None):
        # The first event from `start` (default: from now on) that `pred` accepts.
        start = len(seen) if start is None else start
        while True:
            for ev in seen[start:]:
                if pred(ev):
                    return ev
            await asyncio.sleep(0.02)

    def reply_to(rid):
        return lambda ev: ev.get("request_id") == rid

    async def ask(msg):
        await job.control.write(msg)
        return await asyncio.wait_for(answer(reply_to(msg["request_id"])), args.timeout)

    try:
        # The real runner's sequence: it announces itself, answers pings, refuses a stream
        # before a pipeline is loaded, loads one, and only then streams.
        await asyncio.wait_for(answer(lambda ev: ev.get("type") == "runner_ready", 0), args.timeout)
        out["runner_ready"] = True
        out["pong"] = await ask({"type": "ping", "timestamp": 42, "request_id": "p1"})
        early = await ask({"type": "start_stream", "request_id": "s0", "params": {"prompt": "cat"}})
        out["early"] = {"type": early.get("type"), "error": early.get("error")}
        load = await ask({"type": "api", "request_id": "l1", "method": "POST",
                          "path": "/api/v1/pipeline/load", "body": {"pipeline_ids": ["gray"]}})
        out["load_status"] = load.get("status")
        status = None
        for n in range(int(args.timeout / 0.1)):
            st = await ask({"type": "api", "request_id": f"st{n}", "method": "GET",
                            "path": "/api/v1/pipeline/status"})
            status = (st.get("data") or {}).get("status")
            if status in ("loaded", "error"):
                break
            await asyncio.sleep(0.1)
        out["loaded"] = status
        graph = {
            "nodes": [{"id": "input", "type": "source"},
                      {"id": "gray", "type": "pipeline", "pipeline_id": "gray"},
                      {"id": "output", "type": "sink"}],
            "edges": [{"from": "input", "from_port": "video", "to_node": "gray",
                       "to_port": "video", "kind": "stream"},
                      {"from": "gray", "from_port": "video", "to_node": "output",
                       "to_port": "video", "kind": "stream"}],
        }
        started = await ask({"type": "start_stream", "request_id": "s1", "params": {
            "pipeline_ids": ["gray"], "input_mode": "video", "graph": graph, "prompt": "cat"}})
        out["stream_started"] = {
            "request_id": started.get("request_id"),
            "directions": sorted(c.get("direction") for c in started.get("channels", [])),
            "roles": sorted(c.get("role") for c in started.get("channels", [])),
        }
        stopped = await ask({"type": "stop_stream", "request_id": "x1"})
        out["stream_stopped"] = stopped.get("type")
    finally:
        reader.cancel()
        await job.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["runner", "scope"])
    p.add_argument("--orch", required=True)
    p.add_argument("--runner-base", default=None)
    p.add_argument("--secret", default="")
    p.add_argument("--signer", default=None)
    p.add_argument("--timeout", type=float, default=15.0)
    args = p.parse_args()
    out = {"ok": False}
    try:
        if args.mode == "runner":
            asyncio.run(runner_mode(args, out))
        else:
            asyncio.run(scope_mode(args, out))
        out["ok"] = True
    except Exception as e:  # report every failure as data for the caller
        out["error"] = f"{e.__class__.__name__}: {e}"
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
