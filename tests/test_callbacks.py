"""tfrestore.callbacks.QueueControl: loss-list guard and queue freezing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.callbacks import QueueControl, check_loss_list, find_queue_losses
from tfrestore.losses import MSE, D2SMLoss, L1, ListOfLossesError


def _features(x):
    return tf.nn.avg_pool2d(x - 0.5, 4, 4, "VALID")


def _loss():
    return D2SMLoss(feature_extractor=_features, patch_size=None, queue_size=8, image_size=8)


def _model(outputs=1):
    inp = keras.Input((8, 8, 3))
    outs = [keras.layers.Conv2D(3, 3, padding="same", name=f"out{i}")(inp) for i in range(outputs)]
    return keras.Model(inp, outs if outputs > 1 else outs[0])


def _data(n=4):
    rng = np.random.default_rng(0)
    return rng.uniform(size=(n, 8, 8, 3)).astype("float32"), rng.uniform(size=(n, 8, 8, 3)).astype(
        "float32"
    )


def test_list_of_losses_on_single_output_is_rejected_before_any_step():
    x, y = _data()
    queue_loss = _loss()
    model = _model()
    model.compile(optimizer="sgd", loss=[L1(), queue_loss])
    with pytest.raises(ListOfLossesError, match=r"enable_loss_terms\(model\)"):
        model.fit(x, y, batch_size=4, verbose=0, callbacks=[QueueControl()])
    assert queue_loss.queue_count == 0


def test_list_matching_the_outputs_is_accepted():
    x, y = _data()
    model = _model(outputs=2)
    model.compile(optimizer="sgd", loss=[L1(), MSE()])
    check_loss_list(model)
    model.fit(x, [y, y], batch_size=4, verbose=0, callbacks=[QueueControl()])


def test_find_queue_losses_looks_inside_sums_and_lists():
    q1, q2 = _loss(), _loss()
    model = _model(outputs=2)
    model.compile(optimizer="sgd", loss=[L1() + 0.5 * q1, q2])
    assert find_queue_losses(model) == [q1, q2]
    stateless = D2SMLoss(feature_extractor=_features, patch_size=None)
    model.compile(optimizer="sgd", loss=L1() + stateless)
    assert find_queue_losses(model) == [stateless]  # harmless: no queue to switch


def test_evaluate_with_callback_keeps_queue_and_reenables():
    x, y = _data(8)
    loss = _loss()
    model = _model()
    model.compile(optimizer="sgd", loss=L1() + loss)
    control = QueueControl()
    model.fit(x, y, batch_size=4, verbose=0, callbacks=[control])
    assert loss.queue_count == 8
    model.evaluate(x, y, batch_size=4, verbose=0, callbacks=[control])
    assert loss.queue_count == 8
    assert int(loss._queue.enabled.numpy()) == 1  # re-enabled after evaluation
