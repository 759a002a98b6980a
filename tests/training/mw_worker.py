"""One training process for the multi-worker / resume tests (not a test module).

    python mw_worker.py CONFIG.json OUTPUT_DIR RESULT.npz [KILL_AT_GLOBAL_STEP]

Trains with :func:`tfrestore.training.train` (``TF_CONFIG`` from the
environment), then saves the final weights, the D2SM queue and PDL's draw counter to RESULT.npz.
With KILL_AT_GLOBAL_STEP the process SIGKILLs itself right after that training
step (after the step's backup, if one is due).
"""

import json
import os
import signal
import sys

import numpy as np


def main():
    cfg_path, out_dir, result = sys.argv[1:4]
    kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)

    import keras

    from tfrestore.training import train

    steps = cfg["train"]["steps_per_epoch"]

    class KillAt(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch * steps + batch + 1 == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    res = train(cfg, output_dir=out_dir, report=False, callbacks=[KillAt()] if kill_at else [])
    arrays = {f"w{i}": w for i, w in enumerate(res.model.get_weights())}
    for loss in getattr(res.model.loss, "losses", []):
        if hasattr(loss, "queue_state"):
            pred, true, count = loss.queue_state()
            arrays.update(queue_pred=pred, queue_true=true, queue_count=np.asarray(count))
        if getattr(loss, "_draws", None) is not None:  # PDL's projection counter
            arrays["pdl_draws"] = np.asarray(loss._draws.numpy())
    arrays["loss"] = np.asarray(res.history["loss"])
    np.savez(result, **arrays)


if __name__ == "__main__":
    main()
