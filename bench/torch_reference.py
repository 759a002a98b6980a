"""PyTorch reference losses for ``python -m bench torch_parity`` (run in a torch interpreter).

A self-contained script: it imports only torch and NumPy, never tfrestore or
TensorFlow, so it runs in a separate virtual environment that has torch
(``python -m venv torchvenv && torchvenv/bin/pip install torch numpy``). The
benchmark starts it as a subprocess and drives it over stdin/stdout, one JSON
object per line, so that TensorFlow and PyTorch steps alternate on the same cores.

The computations are those of the reference implementations, written with plain
``torch.nn.functional`` ops on the torchvision weight files that tfrestore uses:

* ``lpips_alex``: the ``lpips`` package, ``LPIPS(net="alex", version="0.1")`` with
  ``normalize=True`` (input [0, 1] -> [-1, 1] -> ScalingLayer -> AlexNet relu1..5
  -> unit-normalise channels with eps 1e-10 -> squared difference -> 1x1 ``lin``
  conv -> spatial mean -> sum over layers); the target pass under ``no_grad``.
* ``pdl``: VGG16 ``features[:23]`` (relu4_3) on ImageNet mean/std input, each
  channel's H*W activations sorted, ``mean |sorted(p) - sorted(t)|`` over positions
  and channels (the PDL paper's identity projection, p = 1).
* ``perceptual``: the same features, ``mean |p - t|`` (L1).

Each step is the loss forward and backward with respect to the prediction; the
target features carry no gradient.

Protocol: the per-image values and input gradients (NHWC) of each loss on the input
pair are saved to ``--outputs`` (an .npz, for the agreement check), then the line
``{"ready": torch version, "threads": n}`` is written; then each request
``{"run": name, "reps": k}`` is answered with ``{"times": [k seconds]}``, and
``{"quit": true}`` ends the process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ALEX = ((0, 4, 2, False), (3, 1, 2, True), (6, 1, 1, True), (8, 1, 1, False), (10, 1, 1, False))
# torchvision vgg16.features conv indices up to relu4_3 (index 22), with the max-pools
# that precede blocks 2, 3 and 4.
VGG_RELU4_3 = ((0, False), (2, False), (5, True), (7, False), (10, True), (12, False),
               (14, False), (17, True), (19, False), (21, False))
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _load(path):
    with np.load(path) as data:
        return {k: torch.from_numpy(np.ascontiguousarray(data[k], dtype=np.float32))
                for k in data.files}


def _channel_vector(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


def build_lpips_alex(weights_dir):
    backbone = _load(os.path.join(weights_dir, "alexnet_torchvision_features.npz"))
    lin = _load(os.path.join(weights_dir, "lpips_v0.1_alex.npz"))
    lins = [lin[f"lin{k}.model.1.weight"] for k in range(5)]
    shift, scale = _channel_vector(SHIFT), _channel_vector(SCALE)

    def features(x):
        # lpips.pretrained_networks.alexnet: slice k ends at relu k; the max-pools
        # before conv2 and conv3 open slices 2 and 3.
        h = (x * 2 - 1 - shift) / scale
        out = []
        for idx, stride, pad, pool_before in ALEX:
            if pool_before:
                h = F.max_pool2d(h, 3, 2)
            h = F.relu(F.conv2d(h, backbone[f"features.{idx}.weight"],
                                backbone[f"features.{idx}.bias"], stride, pad))
            out.append(h)
        return out

    def normalize(f, eps=1e-10):
        return f / (torch.sqrt(torch.sum(f ** 2, dim=1, keepdim=True)) + eps)

    def loss(y_true, y_pred):
        with torch.no_grad():
            ft = [normalize(f) for f in features(y_true)]
        fp = [normalize(f) for f in features(y_pred)]
        total = 0
        for a, b, w in zip(fp, ft, lins):
            total = total + F.conv2d((a - b) ** 2, w).mean(dim=(2, 3), keepdim=True)
        return total.view(-1)

    return loss


def _vgg_relu4_3(weights_dir):
    w = _load(os.path.join(weights_dir, "vgg16_torchvision_features.npz"))
    mean, std = _channel_vector(MEAN), _channel_vector(STD)

    def features(x):
        h = (x - mean) / std
        for idx, pool_before in VGG_RELU4_3:
            if pool_before:
                h = F.max_pool2d(h, 2, 2)
            h = F.relu(F.conv2d(h, w[f"features.{idx}.weight"], w[f"features.{idx}.bias"],
                                1, 1))
        return h

    return features


def build_pdl(weights_dir):
    features = _vgg_relu4_3(weights_dir)

    def loss(y_true, y_pred):
        with torch.no_grad():
            ft = features(y_true)
        fp = features(y_pred)
        b, c = fp.shape[:2]
        u = torch.sort(fp.reshape(b, c, -1), dim=-1).values
        v = torch.sort(ft.reshape(b, c, -1), dim=-1).values
        return (u - v).abs().mean(dim=(1, 2))

    return loss


def build_perceptual(weights_dir):
    features = _vgg_relu4_3(weights_dir)

    def loss(y_true, y_pred):
        with torch.no_grad():
            ft = features(y_true)
        return (features(y_pred) - ft).abs().mean(dim=(1, 2, 3))

    return loss


BUILDERS = {"lpips_alex": build_lpips_alex, "pdl": build_pdl, "perceptual": build_perceptual}


def step(loss, y_true, y_pred):
    x = y_pred.detach().requires_grad_(True)
    values = loss(y_true, x)
    values.mean().backward()  # Keras' default reduction: mean over the batch
    return values.detach(), x.grad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", required=True, help=".npz with y_true, y_pred (NHWC)")
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--outputs", required=True, help=".npz written with values, gradients")
    parser.add_argument("--losses", default=",".join(BUILDERS))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)  # one op at a time: eager PyTorch has no op-level overlap
    with np.load(args.inputs) as data:  # NHWC -> NCHW
        y_true = torch.from_numpy(np.ascontiguousarray(data["y_true"].transpose(0, 3, 1, 2)))
        y_pred = torch.from_numpy(np.ascontiguousarray(data["y_pred"].transpose(0, 3, 1, 2)))
    losses = {name: BUILDERS[name](args.weights_dir) for name in args.losses.split(",")}
    results = {}
    for name, loss in losses.items():
        v, g = step(loss, y_true, y_pred)
        results[f"{name}/values"] = v.numpy()
        results[f"{name}/grads"] = g.permute(0, 2, 3, 1).numpy()
    np.savez(args.outputs, **results)
    out = sys.stdout
    out.write(json.dumps({"ready": torch.__version__, "threads": torch.get_num_threads()}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        loss = losses[request["run"]]
        times = []
        for _ in range(int(request["reps"])):
            t0 = time.perf_counter()
            step(loss, y_true, y_pred)
            times.append(time.perf_counter() - t0)
        out.write(json.dumps({"times": times}) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
