#!/usr/bin/env python3
"""Time the official Livepeer Python SDK from `start_scope` to the first processed frame.

Usage:
    python bench_scope.py --orch URL [--signer URL] [--fps F] [--size WxH]

One timed run: `start_scope`, `start_stream` on the control channel until `stream_started`
names the media channels, then `MediaPublish` of test-pattern frames (made before the clock
starts) into the `in` channel while `MediaOutput` reads the `out` channel until its first
decoded video frame. Prints one JSON object: {"ok": true, "start_ms": .., "first_frame_ms":
..} (both from just before `start_scope`) or {"ok": false, "error": ...}.
"""

import argparse
import asyncio
import json
import sys
import time
from fractions import Fraction

# The SDK first: importing av before the whole SDK crashes some PyAV builds.
from livepeer_gateway import StartJobRequest, start_scope
from livepeer_gateway.media_output import MediaOutput
from livepeer_gateway.media_publish import MediaPublish, MediaPublishConfig, VideoOutputConfig

from media_peer import make_frame


async def first_event(job, kind):
    async for ev in job.events(start_seq=0):
        if isinstance(ev, dict) and ev.get("type") == kind:
            return ev
    return None


async def bench(args, out):
    w, h = (int(v) for v in args.size.split("x"))
    frames = [make_frame(w, h, i) for i in range(args.frames)]
    tb = Fraction(1, 90000)

    t0 = time.perf_counter()
    job = await start_scope(
        args.orch,
        StartJobRequest(model_id="scope", params={"prompt": "bench"}),
        signer_url=args.signer,
        timeout=10,
    )
    pub = mo = reader = None
    try:
        waiting = asyncio.create_task(first_event(job, "stream_started"))
        await job.control.write({"type": "start_stream", "request_id": "s1", "params": {"prompt": "bench"}})
        started = await asyncio.wait_for(waiting, args.timeout)
        urls = {c.get("direction"): c.get("url") for c in (started or {}).get("channels", [])}
        out["start_ms"] = (time.perf_counter() - t0) * 1000.0

        mo = MediaOutput(urls["out"], start_seq=0)
        first = asyncio.get_running_loop().create_future()

        async def read():
            async for f in mo.frames():
                if f.kind == "video":
                    first.set_result(time.perf_counter())
                    return

        reader = asyncio.create_task(read())
        cfg = MediaPublishConfig(tracks=[VideoOutputConfig(fps=args.fps, keyframe_interval_s=0.5)])
        pub = MediaPublish(urls["in"], config=cfg)
        t_pub = time.perf_counter()
        i = 0
        while not first.done():
            if reader.done():
                reader.result()
                raise RuntimeError("output ended before a frame")
            if time.perf_counter() - t0 > args.timeout:
                raise TimeoutError("no output frame in time")
            frame = frames[i % len(frames)]
            frame.pts = int(i * 90000 / args.fps)
            frame.time_base = tb
            await pub.write_frame(frame)
            i += 1
            delay = t_pub + i / args.fps - time.perf_counter()
            if delay > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(first), delay)
                except asyncio.TimeoutError:
                    pass
        out["first_frame_ms"] = (first.result() - t0) * 1000.0
        out["frames_sent"] = i
    finally:
        if reader is not None:
            reader.cancel()
        if pub is not None:
            await pub.close()
        if mo is not None:
            await mo.close()
        await job.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orch", required=True)
    p.add_argument("--signer", default=None)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--size", default="256x144")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()
    out = {"ok": False}
    try:
        asyncio.run(bench(args, out))
        out["ok"] = True
    except Exception as e:  # report every failure as data for the caller
        out["error"] = f"{e.__class__.__name__}: {e}"
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
