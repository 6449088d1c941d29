#!/usr/bin/env python3
"""The official Livepeer Python SDK as a peer of our gateway on an LV2V job's channels.

Modes:
    read --url URL --path a.b.c --value V [--start-seq -2] [--timeout 15]
        Read the JSON channel at URL with the SDK's ChannelReader (the `Events` facade)
        until a message whose dotted path equals V; print {"ok": true, "message": ...}.

    start --orch URL [--signer URL] --model M
        Start a job with the SDK's start_lv2v and print its URLs as one JSON line, then
        obey stdin, one command per line:
            control {json}   write the object on the control channel with the SDK's Control
            close            close the job
        Each command is acknowledged with one JSON line.

Every failure is printed as {"ok": false, "error": ...} with exit status 1.
"""

import argparse
import asyncio
import json
import sys

from livepeer_gateway import Events, StartJobRequest, start_lv2v


def emit(obj):
    print(json.dumps(obj), flush=True)


def lookup(msg, path):
    cur = msg
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


async def read(args):
    async def until_match():
        async for msg in Events(args.url)(start_seq=args.start_seq):
            if str(lookup(msg, args.path)) == args.value:
                return msg
        return None

    msg = await asyncio.wait_for(until_match(), timeout=args.timeout)
    if msg is None:
        raise RuntimeError("channel ended before a matching message")
    emit({"ok": True, "message": msg})


async def start(args):
    job = start_lv2v(
        args.orch,
        StartJobRequest(model_id=args.model),
        signer_url=args.signer,
    )
    emit(
        {
            "ok": True,
            "manifest_id": job.manifest_id,
            "publish_url": job.publish_url,
            "subscribe_url": job.subscribe_url,
            "control_url": job.control_url,
            "events_url": job.events_url,
        }
    )
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd, _, rest = line.strip().partition(" ")
            if cmd == "control":
                await job.control.write(json.loads(rest))
                emit({"ok": True, "ack": "control"})
            elif cmd == "close":
                break
            elif cmd:
                emit({"ok": False, "error": f"unknown command {cmd!r}"})
    finally:
        await job.close()
    emit({"ok": True, "ack": "closed"})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("read")
    r.add_argument("--url", required=True)
    r.add_argument("--path", required=True)
    r.add_argument("--value", required=True)
    r.add_argument("--start-seq", type=int, default=-2)
    r.add_argument("--timeout", type=float, default=15.0)
    s = sub.add_parser("start")
    s.add_argument("--orch", required=True)
    s.add_argument("--signer", default=None)
    s.add_argument("--model", default="noop")
    args = p.parse_args()
    try:
        asyncio.run(read(args) if args.mode == "read" else start(args))
    except Exception as e:  # report every failure as data for the caller
        emit({"ok": False, "error": f"{e.__class__.__name__}: {e}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
