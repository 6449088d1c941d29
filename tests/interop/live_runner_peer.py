"""A live runner written with the official Python SDK (livepeer-gateway 1.0.0).

It registers with an orchestrator through ``register_runner`` (heartbeats, o2r events),
serves ``POST /echo``: creates the session's ``in``/``out`` trickle channels through
``create_trickle_channels`` and answers their public URLs, as the reference echo runner does.

Protocol with the test (one JSON object per stdout line):
  {"registered": <runner_id>}          once registered
  {"event": "reserved"|"released", "session": <id>}   for each o2r session event
  {"echo": <session id>, "channels": [...]}           for each app call
It exits when stdin closes, unregistering first.

Usage: live_runner_peer.py ORCH_URL SECRET APP PRICE_USD_PER_HOUR
"""

import asyncio
import json
import sys

from aiohttp import web

from livepeer_gateway import create_trickle_channels, register_runner


def emit(obj):
    print(json.dumps(obj), flush=True)


async def main() -> None:
    orch_url, secret, app, price = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

    async def echo(request: web.Request) -> web.Response:
        channels = await create_trickle_channels(
            request,
            [
                {"name": "in", "mime_type": "video/MP2T"},
                {"name": "out", "mime_type": "video/MP2T"},
            ],
        )
        session = request.headers.get("Livepeer-Session-Id", "")
        emit({"echo": session, "channels": [c["name"] for c in channels]})
        urls = {c["name"]: c["url"] for c in channels}
        return web.json_response({"session": session, "in": urls["in"], "out": urls["out"], "mode": "persistent"})

    server = web.Application()
    server.router.add_post("/echo", echo)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    def on_event(ev):
        emit({"event": ev.event, "session": ev.session_id})

    registration = await register_runner(
        orch_url,
        secret=secret,
        runner_url=f"http://127.0.0.1:{port}",
        app=app,
        price=price,
        currency="usd",
        unit="hour",
        capacity=1,
        auto_detect_gpu=False,
        heartbeat_interval_s=1.0,
        on_session_reserve=on_event,
        on_session_release=on_event,
    )
    emit({"registered": registration.runner_id})

    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await registration.close()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
