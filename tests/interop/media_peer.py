"""Drives the official Python SDK's media classes against a trickle channel.

Used by lpgw's media interop tests as an independent peer. Every command prints one JSON
object on stdout.

  publish   --url URL --frames N [--fps F] [--size WxH]   MediaPublish of N index-coded frames
  subscribe --url URL [--timeout S]                       MediaOutput.frames() until the end

Frames carry their index like lpgw's test pattern: 16 blocks across the top (bright = 1,
most significant bit first) over a row holding the complement, block side
min(width/16, height/4, 32). `subscribe` reads the index back from every frame.
"""

import argparse
import asyncio
import json
import time
from fractions import Fraction

# The SDK first: importing av before the whole SDK crashes some PyAV builds.
from livepeer_gateway.media_output import MediaOutput
from livepeer_gateway.media_publish import MediaPublish, MediaPublishConfig, VideoOutputConfig
import av


def block_side(w: int, h: int) -> int:
    return min(w // 16, h // 4, 32)


def make_frame(w: int, h: int, index: int) -> av.VideoFrame:
    b = block_side(w, h)
    y = bytearray(((x + row * 2 + index * 3) % 150 + 40 for row in range(h) for x in range(w)))
    for bit in range(16):
        on = (index >> (15 - bit)) & 1 == 1
        for r, value in ((0, on), (1, not on)):
            level = 235 if value else 16
            for row in range(r * b, (r + 1) * b):
                start = row * w + bit * b
                y[start:start + b] = bytes([level]) * b
    cw, ch = (w + 1) // 2, (h + 1) // 2
    frame = av.VideoFrame(w, h, "yuv420p")
    planes = (bytes(y), bytes([128]) * (cw * ch), bytes([128]) * (cw * ch))
    for k, (plane, data) in enumerate(zip(frame.planes, planes)):
        line = plane.line_size
        width, rows = (w, h) if k == 0 else (cw, ch)
        if line == width:
            plane.update(data)
        else:
            padded = bytearray(line * rows)
            for r in range(rows):
                padded[r * line:r * line + width] = data[r * width:(r + 1) * width]
            plane.update(bytes(padded))
    return frame


def read_index(frame: av.VideoFrame):
    w, h = frame.width, frame.height
    b = block_side(w, h)
    if b < 4:
        return None
    plane = frame.planes[0]
    line = plane.line_size
    data = bytes(plane)
    m = b // 4

    def mean(bit, r):
        total = n = 0
        for row in range(r * b + m, (r + 1) * b - m):
            base = row * line
            seg = data[base + bit * b + m: base + (bit + 1) * b - m]
            total += sum(seg)
            n += len(seg)
        return total / max(n, 1)

    index = 0
    for bit in range(16):
        on = mean(bit, 0) > 128
        if on == (mean(bit, 1) > 128):
            return None
        index = (index << 1) | int(on)
    return index


async def publish(args, out):
    w, h = (int(v) for v in args.size.split("x"))
    cfg = MediaPublishConfig(tracks=[VideoOutputConfig(fps=args.fps, keyframe_interval_s=0.5)])
    pub = MediaPublish(args.url, config=cfg)
    tb = Fraction(1, 90000)
    t0 = time.monotonic()
    try:
        for i in range(args.frames):
            due = t0 + i / args.fps
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = make_frame(w, h, i)
            frame.pts = int(i * 90000 / args.fps)
            frame.time_base = tb
            await pub.write_frame(frame)
        # Let the encoder thread drain before closing.
        await asyncio.sleep(0.5)
        stats = pub.get_stats()
        out["segments"] = stats.segments_started
        out["dropped"] = sum(
            t.frames_dropped_overflow + t.frames_dropped_debt + t.frames_dropped_non_monotonic_pts
            for t in stats.track_queue_stats
        )
    finally:
        await pub.close()
    out["frames"] = args.frames


async def subscribe(args, out):
    mo = MediaOutput(args.url, start_seq=0)
    indices = []
    sizes = set()

    async def run():
        async for f in mo.frames():
            if f.kind != "video":
                continue
            sizes.add((f.width, f.height))
            indices.append(read_index(f.frame))

    try:
        await asyncio.wait_for(run(), timeout=args.timeout)
    except asyncio.TimeoutError:
        out["timed_out"] = True
    finally:
        await mo.close()
    out["frames"] = len(indices)
    out["indices"] = indices
    out["sizes"] = sorted(sizes)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["publish", "subscribe"])
    p.add_argument("--url", required=True)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--size", default="256x144")
    p.add_argument("--timeout", type=float, default=15.0)
    args = p.parse_args()
    out = {"ok": False}
    try:
        asyncio.run(publish(args, out) if args.command == "publish" else subscribe(args, out))
        out["ok"] = True
    except Exception as e:  # report every failure as data for the caller
        out["error"] = f"{e.__class__.__name__}: {e}"
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
