"""Drives the official Python SDK's trickle clients against a trickle server.

Used by lpgw's interop tests and benchmarks as an independent peer. Every command prints
one JSON object on stdout. Segment payloads follow a shared pattern (see `pattern`) so that
each side can check every byte without exchanging the data.
"""

import argparse
import asyncio
import json
import sys
import time

from livepeer_gateway.channel_reader import ChannelReader, JSONLReader
from livepeer_gateway.control import Control
from livepeer_gateway.trickle_publisher import TricklePublisher
from livepeer_gateway.trickle_subscriber import TrickleSubscriber


def pattern(seq: int, size: int) -> bytes:
    """Byte j of segment `seq` is (seq*31 + j*7) % 251."""
    start = (seq * 31) % 251
    period = bytes(((start + j * 7) % 251) for j in range(251))
    reps = size // 251 + 1
    return (period * reps)[:size]


async def read_segment(segment) -> bytes:
    reader = segment.make_reader()
    parts = []
    try:
        while True:
            chunk = await reader.read(chunk_size=64 * 1024)
            if not chunk:
                break
            parts.append(chunk)
    finally:
        await segment.close()
    return b"".join(parts)


async def publish(args) -> dict:
    pub = TricklePublisher(args.url, args.mime)
    sent = 0
    for i in range(args.segments):
        data = pattern(i, args.size)
        async with await pub.next() as seg:
            for off in range(0, len(data), args.chunk):
                await seg.write(data[off:off + args.chunk])
        sent += len(data)
    # Let the last POST complete before closing.
    await asyncio.sleep(0.2)
    stats = pub.get_stats()
    if args.delete:
        await pub.close()
    return {"segments": args.segments, "bytes": sent, "stats": str(stats)}


async def subscribe(args) -> dict:
    sub = TrickleSubscriber(args.url, start_seq=args.start, max_bytes=args.max_bytes)
    out = []
    try:
        while len(out) < args.segments:
            seg = await asyncio.wait_for(sub.next(), timeout=args.timeout)
            if seg is None:
                break
            seq = seg.seq()
            data = await read_segment(seg)
            out.append({"seq": seq, "len": len(data), "match": data == pattern(seq, len(data))})
    finally:
        await sub.close()
    return {"segments": out}


async def control(args) -> dict:
    ctl = Control(args.url)
    msgs = json.loads(args.messages)
    for m in msgs:
        await ctl.write(m)
    # Keep the channel until the caller has read everything (it closes our stdin).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await ctl.close()
    return {"written": len(msgs)}


async def events(args) -> dict:
    reader_cls = JSONLReader if args.jsonl else ChannelReader
    got = []

    async def collect():
        async for ev in reader_cls(args.url)(start_seq=args.start):
            got.append(ev)
            if len(got) >= args.count:
                return

    await asyncio.wait_for(collect(), timeout=args.timeout)
    return {"events": got}


async def bench_relay(args) -> dict:
    """One publisher and `subs` subscribers; returns per-subscriber throughput."""
    pub = TricklePublisher(args.url, "application/octet-stream")
    payload = pattern(0, args.size)
    received = [0] * args.subs

    async def run_sub(k: int):
        sub = TrickleSubscriber(args.url, start_seq=0)
        n = 0
        try:
            while n < args.segments:
                seg = await sub.next()
                if seg is None:
                    break
                reader = seg.make_reader()
                while True:
                    chunk = await reader.read(chunk_size=256 * 1024)
                    if not chunk:
                        break
                    received[k] += len(chunk)
                await seg.close()
                n += 1
        finally:
            await sub.close()

    tasks = [asyncio.create_task(run_sub(k)) for k in range(args.subs)]
    await asyncio.sleep(0.3)
    t0 = time.perf_counter()
    for _ in range(args.segments):
        async with await pub.next() as seg:
            for off in range(0, len(payload), args.chunk):
                await seg.write(payload[off:off + args.chunk])
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.timeout)
    elapsed = time.perf_counter() - t0
    await pub.close()
    total = sum(received)
    return {
        "subs": args.subs,
        "seconds": elapsed,
        "bytes_per_sub": total / args.subs,
        "mb_per_s_per_sub": total / args.subs / elapsed / 1e6,
        "mb_per_s_total": total / elapsed / 1e6,
    }


async def bench_latency(args) -> dict:
    """Publisher-write to subscriber-first-byte latency, one small segment at a time."""
    pub = TricklePublisher(args.url, "application/octet-stream")
    sub = TrickleSubscriber(args.url, start_seq=-1)
    lat = []
    sent_at = {}

    async def reader():
        while len(lat) < args.n:
            seg = await sub.next()
            if seg is None:
                return
            r = seg.make_reader()
            first = await r.read(chunk_size=64)
            t1 = time.perf_counter_ns()
            idx = int.from_bytes(first[:4], "big")
            if idx in sent_at:
                lat.append((t1 - sent_at[idx]) / 1e6)
            while await r.read():
                pass
            await seg.close()

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.3)
    for i in range(args.n + 1):
        seg = await pub.next()
        sent_at[i] = time.perf_counter_ns()
        await seg.write(i.to_bytes(4, "big") + b"x" * 60)
        await seg.close()
        await asyncio.sleep(args.gap_ms / 1000)
        if task.done():
            break
    await asyncio.wait_for(task, timeout=args.timeout)
    await sub.close()
    await pub.close()
    lat.sort()
    return {"n": len(lat), "p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99)]}


def main() -> None:
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd", required=True)
    a = sp.add_parser("publish")
    a.add_argument("url")
    a.add_argument("--segments", type=int, default=5)
    a.add_argument("--size", type=int, default=100_000)
    a.add_argument("--chunk", type=int, default=4096)
    a.add_argument("--mime", default="video/MP2T")
    a.add_argument("--delete", action="store_true")
    a = sp.add_parser("subscribe")
    a.add_argument("url")
    a.add_argument("--segments", type=int, default=5)
    a.add_argument("--start", type=int, default=0)
    a.add_argument("--max-bytes", type=int, default=None)
    a.add_argument("--timeout", type=float, default=20)
    a = sp.add_parser("control")
    a.add_argument("url")
    a.add_argument("--messages", required=True)
    a = sp.add_parser("events")
    a.add_argument("url")
    a.add_argument("--count", type=int, required=True)
    a.add_argument("--start", type=int, default=0)
    a.add_argument("--jsonl", action="store_true")
    a.add_argument("--timeout", type=float, default=20)
    a = sp.add_parser("bench-relay")
    a.add_argument("url")
    a.add_argument("--segments", type=int, default=32)
    a.add_argument("--size", type=int, default=4 << 20)
    a.add_argument("--chunk", type=int, default=64 * 1024)
    a.add_argument("--subs", type=int, default=1)
    a.add_argument("--timeout", type=float, default=120)
    a = sp.add_parser("bench-latency")
    a.add_argument("url")
    a.add_argument("--n", type=int, default=500)
    a.add_argument("--gap-ms", type=float, default=5)
    a.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    fn = {
        "publish": publish,
        "subscribe": subscribe,
        "control": control,
        "events": events,
        "bench-relay": bench_relay,
        "bench-latency": bench_latency,
    }[args.cmd]
    print(json.dumps(asyncio.run(fn(args))), flush=True)


if __name__ == "__main__":
    main()
