"""Inference memory: peak RSS and time of whole-image vs automatic (budgeted) inference.

Every case runs in its own subprocess (so one case's peak does not hide another's) on a random
RGB image: the child builds the model, plans the run (``plan_inference``) and reports the
resident memory before ``predict_image``, its peak (``ru_maxrss``) and the seconds it took.
"working" = peak - resident before: what inference itself allocated (activations, tiles,
output buffers), the quantity the budget bounds. Whole-image cases whose estimate exceeds the
budget are skipped (that is what the budget is for), so each row whose both columns are filled
compares the two paths where both fit.

``--calibrate`` instead prints, per model and size, measured working memory over the traced
live-set peak (``Profile.bytes_per_pixel`` x pixels + input/output copies): the largest ratio
justifies ``tfrestore.inference.memory.CALIBRATION``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

_MODELS = {
    "dncnn-demo": "DnCNN(channels=3, depth=8, filters=32, batch_norm=False)",
    "dncnn-17": "DnCNN(channels=3, depth=17, filters=64, batch_norm=False)",
    "ffdnet": "FFDNet(channels=3)",
    "liu-same": "LiuDenoiser(padding='same')",
    "edsr-x2": "EDSR(channels=3, scale=2)",
    "unet": "UNet()",
}


def add_arguments(parser):
    parser.add_argument("--model", default="dncnn-demo", choices=sorted(_MODELS))
    parser.add_argument(
        "--mpx", type=float, nargs="+", default=[1, 9, 36], help="image sizes in megapixels"
    )
    parser.add_argument("--budget", default="2G", help="--max-memory of the auto cases")
    parser.add_argument(
        "--calibrate", action="store_true", help="measured / traced memory ratios instead"
    )
    parser.add_argument("--child", default=None, help=argparse_hidden())


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def _child(spec):
    """Run one case; print a JSON line."""
    import resource

    import numpy as np
    import psutil

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfrestore import models  # noqa: F401
    from tfrestore.inference import memory
    from tfrestore.inference.restore import plan_inference, predict_image

    model = eval(_MODELS[spec["model"]], vars(models))  # noqa: S307 - fixed table above
    h, w = spec["hw"]
    img = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
    sigma = 25 / 255 if len(model.inputs) > 1 else None
    tile = None if spec["mode"] == "whole" else "auto"
    plan = plan_inference(model, img.shape, tile_size=tile, max_memory=spec["budget"], sigma=sigma)
    if spec["mode"] == "whole" and spec.get("skip_over_budget") and plan.estimate > plan.budget:
        print(json.dumps({"skipped": True, "estimate": plan.estimate}))
        return
    # warm the graph at a small size (tracing, oneDNN set-up) so that it is not counted
    predict_image(model, img[:64, :64], tile_size=None, sigma=sigma)
    before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    predict_image(model, img, plan=plan, sigma=sigma)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    prof = memory.activation_profile(None, 3, key=model)
    traced = prof.bytes_per_pixel * h * w + h * w * 4 * (3 + 2 * prof.out_channels)
    print(
        json.dumps(
            {
                "working": peak - before,
                "peak": peak,
                "seconds": seconds,
                "estimate": plan.estimate,
                "budget": plan.budget,
                "tile": plan.tile_size,
                "traced": traced,
            }
        )
    )


def _run_case(**spec):
    path = [os.getcwd(), os.environ.get("PYTHONPATH")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "memory", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail}
    return json.loads(lines[-1])


def _gb(n):
    return f"{n / 2**30:.2f}"


def run(args):
    if args.child:
        _child(json.loads(args.child))
        return 0
    from tfrestore.inference.memory import parse_memory

    budget = parse_memory(args.budget)
    if args.calibrate:
        print("model        size   working MB  traced MB  ratio")
        worst = 0.0
        for name in _MODELS:
            for side in (256, 512, 1024):
                r = _run_case(model=name, hw=[side, side], mode="whole", budget="64G")
                if "error" in r:
                    print(f"{name:<12} {side:>5}  error: {r['error']}")
                    continue
                ratio = r["working"] / r["traced"]
                worst = max(worst, ratio)
                print(
                    f"{name:<12} {side:>5}  {r['working'] / 2**20:>10.0f}  "
                    f"{r['traced'] / 2**20:>9.0f}  {ratio:.2f}"
                )
        print(f"largest ratio {worst:.2f}")
        return 0
    print(
        f"model {args.model} ({_MODELS[args.model]}), RGB float32 input, budget {args.budget} "
        "for both paths; 'working' = peak RSS - RSS before inference\n"
    )
    print("| Mpx | size | path | tiles | estimate GB | working GB | peak RSS GB | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for mpx in args.mpx:
        side = int(round((mpx * 1e6) ** 0.5))
        for mode in ("whole", "auto"):
            r = _run_case(
                model=args.model, hw=[side, side], mode=mode, budget=args.budget,
                skip_over_budget=True,
            )
            if "error" in r:
                print(f"| {mpx:g} | {side}x{side} | {mode} | error: {r['error']} |||||")
                continue
            if r.get("skipped"):
                print(
                    f"| {mpx:g} | {side}x{side} | {mode} | - | {_gb(r['estimate'])} | "
                    "over budget, not run | | |"
                )
                continue
            tile = "whole" if r["tile"] is None else f"{r['tile'][0]} px"
            flag = "" if r["working"] <= budget else " (over budget!)"
            print(
                f"| {mpx:g} | {side}x{side} | {mode} | {tile} | {_gb(r['estimate'])} | "
                f"{_gb(r['working'])}{flag} | {_gb(r['peak'])} | {r['seconds']:.1f} |"
            )
    return 0
