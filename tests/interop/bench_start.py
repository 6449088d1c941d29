#!/usr/bin/env python3
"""Time the official Livepeer Python SDK's `start_lv2v` against a list of orchestrators.

Usage:
    python bench_start.py --orch URL[,URL...] --model noop --rounds N

Each round calls `start_lv2v` with the whole list (the SDK probes and selects), times the
call with a monotonic clock, then closes the job (not timed). Prints one JSON object:
{"ok": true, "ms": [...], "orchestrators": [...]} or {"ok": false, "error": ...}.
"""

import argparse
import asyncio
import json
import sys
import time

from livepeer_gateway import StartJobRequest, start_lv2v


async def bench(args):
    orchs = [o for o in args.orch.split(",") if o]
    times, chosen = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        job = start_lv2v(orchs, StartJobRequest(model_id=args.model), start_payments=False)
        times.append((time.perf_counter() - started) * 1000.0)
        chosen.append(job.manifest_id and job.publish_url.split("/ai/")[0])
        await job.close()
    return {"ok": True, "ms": times, "orchestrators": chosen}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orch", required=True)
    p.add_argument("--model", default="noop")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    try:
        out = asyncio.run(bench(args))
    except Exception as e:  # report every failure as data for the caller
        out = {"ok": False, "error": f"{e.__class__.__name__}: {e}"}
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
