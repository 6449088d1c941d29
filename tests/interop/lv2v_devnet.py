#!/usr/bin/env python3
"""Drive the official Livepeer Python SDK against a devnet orchestrator.

Runs the SDK's `get_orch_info` and `start_lv2v` (offchain, or paying through a remote
signer), reads one event from the job's events channel, writes params on its control
channel and waits for a status event that carries them, sends one follow-up payment when
paying, closes the job, and prints one JSON object with what it observed.

Usage:
    python lv2v_devnet.py --orch https://127.0.0.1:PORT [--signer http://127.0.0.1:PORT]
                          [--model noop]

Exit status 0 with {"ok": true, ...} on success; on failure 1 with {"ok": false, "error": ...}.
"""

import argparse
import asyncio
import json
import sys

from livepeer_gateway import (
    CapabilityId,
    StartJobRequest,
    build_capabilities,
    get_orch_info,
    start_lv2v,
)


def describe_info(info):
    models = {}
    if info.HasField("capabilities"):
        per_cap = info.capabilities.constraints.PerCapability
        if int(CapabilityId.LIVE_VIDEO_TO_VIDEO) in per_cap:
            for name, m in per_cap[int(CapabilityId.LIVE_VIDEO_TO_VIDEO)].models.items():
                models[name] = {"capacity": m.capacity, "in_use": m.capacityInUse}
    return {
        "transcoder": info.transcoder,
        "auth_session_id": info.auth_token.session_id if info.HasField("auth_token") else None,
        "auth_expiration": info.auth_token.expiration if info.HasField("auth_token") else None,
        "price_per_unit": info.price_info.pricePerUnit if info.HasField("price_info") else None,
        "pixels_per_unit": info.price_info.pixelsPerUnit if info.HasField("price_info") else None,
        "has_ticket_params": info.HasField("ticket_params"),
        "models": models,
    }


async def run_job(args, out):
    job = start_lv2v(
        args.orch,
        StartJobRequest(model_id=args.model, params={"prompt": "interop"}),
        signer_url=args.signer,
        start_payments=False,
    )
    out["job"] = {
        "manifest_id": job.manifest_id,
        "publish_url": job.publish_url,
        "subscribe_url": job.subscribe_url,
        "control_url": job.control_url,
        "events_url": job.events_url,
    }
    try:
        event = None

        async def first_event():
            async for ev in job.events(start_seq=-2):
                return ev
            return None

        event = await asyncio.wait_for(first_event(), timeout=args.timeout)
        out["event"] = {"type": event.get("type"), "pipeline": event.get("pipeline")} if event else None

        # Control: new params written by the SDK show up in the runner's status events.
        if job.control is not None:
            await job.control.write({"prompt": "from-control"})

            async def params_echo():
                async for ev in job.events(start_seq=-1):
                    params = (ev.get("inference_status") or {}).get("last_params") or {}
                    if params.get("prompt") == "from-control":
                        return params
                return None

            out["control_echo"] = await asyncio.wait_for(params_echo(), timeout=args.timeout)
        if args.signer and job.payment_session is not None:
            await asyncio.to_thread(job.payment_session.send_payment)
            out["payment_sent"] = True
    finally:
        await job.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orch", required=True)
    p.add_argument("--signer", default=None)
    p.add_argument("--model", default="noop")
    p.add_argument("--timeout", type=float, default=15.0)
    args = p.parse_args()

    out = {"ok": False}
    try:
        caps = build_capabilities(CapabilityId.LIVE_VIDEO_TO_VIDEO, args.model)
        info = get_orch_info(args.orch, signer_url=args.signer, capabilities=caps)
        out["orch_info"] = describe_info(info)
        asyncio.run(run_job(args, out))
        out["ok"] = True
    except Exception as e:  # report every failure as data for the caller
        out["error"] = f"{e.__class__.__name__}: {e}"
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
