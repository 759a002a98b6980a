"""Multi-worker training: Keras' own ``train_step`` in a tfrestore loop.

With TF 2.21 / Keras 3.15, ``model.fit`` cannot run under
``tf.distribute.MultiWorkerMirroredStrategy`` (keras-team/keras#20585,
tensorflow/tensorflow#72388): even a plain ``MeanAbsoluteError`` fails with
"Attempt to convert a value (PerReplica...) with an unsupported type", and
``model.make_train_function()`` fails in Keras' log reduction ("Invalid
reduction dimension 0 for input with 0 dimensions"). :func:`fit_multi_worker`
therefore runs the loop itself: each step is ``strategy.run(model.train_step)``
on ``strategy.experimental_distribute_dataset`` inside a ``tf.function``, with
the logs reduced over all replicas (``axis=None``), and it calls the usual
Keras callback hooks (``on_epoch_begin``, ``on_train_batch_end``,
``on_test_begin``, ...) so checkpoints, backups, CSV, TensorBoard and the
progress bar work unchanged. The training runner uses it automatically under
that strategy; a config only says ``train.strategy: multi_worker`` (or keeps
``auto`` and sets ``TF_CONFIG``).

What each worker does:

* every worker builds the same dataset; ``DATA`` auto-sharding gives worker
  ``i`` its slice of each global batch (``data.batch_size`` is the global
  batch), so a run on ``N`` workers sees exactly the data of a one-process run;
* gradients are all-reduced by the optimizer; the D2SM queue all-gathers the
  global batch (every worker stores all workers' rows), PDL / DiffLoss draw
  from counters that advance identically everywhere;
* validation runs on every worker over the whole validation set (cheap,
  no collectives, identical logs everywhere);
* only the chief (the ``chief`` task, or worker 0) writes the run directory;
  the other workers write to a temporary directory that is deleted at exit,
  and resume from the chief's ``backup/`` (the run directory must therefore be
  on a file system every node sees).

Launching (one process per node; every process gets the same config and the
same ``--output-dir``):

.. code-block:: bash

    # node 0 (chief)                      # node 1
    export TF_CONFIG='{"cluster": {"worker": ["node0:12345", "node1:12345"]},
                      "task": {"type": "worker", "index": 0}}'   # index 1 on node 1
    tfrestore train --config cfg.yaml --output-dir /shared/runs/exp1

On Slurm, ``srun`` starts one task per node and ``train.strategy:
multi_worker`` sets ``TF_CONFIG`` from the allocation itself (through
``tf.distribute.cluster_resolver.SlurmClusterResolver``, see
:func:`tfrestore.training.strategy.set_tf_config_from_slurm`; ports from
``$TFRESTORE_PORT_BASE``, default 8888)::

    srun --nodes=2 --ntasks-per-node=1 tfrestore train denoise -c cfg.yaml \
        --set train.strategy=multi_worker --output-dir /shared/runs/exp1

A killed worker stops the others at their next collective; restart every
worker with the same command and the run resumes from the chief's last backup.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_multi_worker", "tf_config_from_slurm"]


def tf_config_from_slurm(port_base=8888, resolver=None, **resolver_kwargs):
    """``TF_CONFIG`` mapping for this Slurm task (one worker per task), read
    from the ``SLURM_*`` variables by
    ``tf.distribute.cluster_resolver.SlurmClusterResolver``.

    Args:
        port_base: int. First port; task ``k`` of a node listens on ``port_base + k``.
        resolver: a ``tf.distribute.cluster_resolver.ClusterResolver`` to use
            instead of a new ``SlurmClusterResolver``.
        **resolver_kwargs: passed to ``SlurmClusterResolver`` (e.g.
            ``gpus_per_node``; it runs ``nvidia-smi`` to count them when not given,
            and needs at least 1: on CPU nodes pass ``gpus_per_node=1,
            auto_set_gpu=False``).

    >>> import tensorflow as tf
    >>> r = tf.distribute.cluster_resolver.SimpleClusterResolver(
    ...     tf.train.ClusterSpec({"worker": ["n0:8888", "n1:8888"]}), task_type="worker", task_id=1)
    >>> tf_config_from_slurm(resolver=r)
    {'cluster': {'worker': ['n0:8888', 'n1:8888']}, 'task': {'type': 'worker', 'index': 1}}
    """
    import tensorflow as tf

    if resolver is None:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=port_base, **resolver_kwargs
        )
    spec = resolver.cluster_spec().as_dict()
    return {
        "cluster": {k: list(v) for k, v in spec.items()},
        "task": {"type": resolver.task_type, "index": int(resolver.task_id)},
    }


def _distributed(strategy, ds):
    import tensorflow as tf

    options = tf.data.Options()
    # Each worker takes its slice of every global batch (the pipeline is built
    # from in-memory images or file names, which FILE sharding cannot split).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(ds.with_options(options))


def _train_function(model, strategy):
    import tensorflow as tf

    def step(iterator):
        outputs = strategy.run(model.train_step, args=(next(iterator),))
        # axis=None: a mean over replicas of the per-replica scalars (Keras'
        # own reduction tries axis 0 of a scalar and fails, see module doc).
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in outputs.items()}

    return tf.function(step, reduce_retracing=True)


def _test_function(model):
    import tensorflow as tf

    return tf.function(model.test_step, reduce_retracing=True)


def _to_float(logs):
    return {k: float(np.asarray(v)) for k, v in logs.items()}


def _evaluate(model, strategy, test_fn, val_ds, steps, callbacks):
    model.reset_metrics()
    callbacks.on_test_begin()
    logs = {}
    ds = val_ds.take(steps) if steps else val_ds
    with strategy.scope():
        for i, batch in enumerate(ds):
            callbacks.on_test_batch_begin(i)
            logs = test_fn(batch)
            callbacks.on_test_batch_end(i, logs)
    logs = _to_float(logs)
    callbacks.on_test_end(logs)
    return logs


def fit_multi_worker(
    model,
    strategy,
    train_ds,
    *,
    epochs,
    steps_per_epoch,
    initial_epoch=0,
    initial_step=0,
    validation_data=None,
    validation_steps=None,
    callbacks=(),
    verbose=1,
):
    """Train ``model`` (compiled inside ``strategy.scope()``) like ``model.fit``.

    Args:
        model: a compiled Keras model whose variables belong to ``strategy``.
        strategy: a ``tf.distribute`` strategy (``MultiWorkerMirroredStrategy``;
            any other works too).
        train_ds: tf.data.Dataset. Infinite dataset of global ``(x, y)`` batches.
        epochs, steps_per_epoch, validation_steps, verbose: int. As in ``fit``.
        initial_epoch, initial_step: int. Resume ``initial_step`` steps into
            ``initial_epoch`` (``train_ds`` must already skip the consumed batches).
        validation_data: tf.data.Dataset or None. Finite dataset of ``(x, y)``
            batches, evaluated on every worker after each epoch (logged as ``val_*``).
        callbacks: list of keras.callbacks.Callback. They receive the absolute step
            index.

    Returns:
        The ``keras.callbacks.History`` of the run.
    """
    import keras

    from tfrestore.utils import keras_compat

    cbs = keras.callbacks.CallbackList(
        list(callbacks),
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    with strategy.scope():
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        for x, y in train_ds.take(1):
            keras_compat.symbolic_build(model, (x, y))  # as fit() does
    iterator = iter(_distributed(strategy, train_ds))
    train_fn = _train_function(model, strategy)
    test_fn = _test_function(model) if validation_data is not None else None

    model.stop_training = False
    cbs.on_train_begin()
    epoch_logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        cbs.on_epoch_begin(epoch)
        logs = {}
        first = initial_step if epoch == initial_epoch else 0
        for step in range(first, steps_per_epoch):
            cbs.on_train_batch_begin(step)
            logs = train_fn(iterator)
            cbs.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = _to_float(logs)
        if validation_data is not None:
            val = _evaluate(model, strategy, test_fn, validation_data, validation_steps, cbs)
            epoch_logs.update({f"val_{k}": v for k, v in val.items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    if getattr(model.optimizer, "finalize_variable_values", None) is not None:
        model.optimizer.finalize_variable_values(model.trainable_weights)  # as fit() does
    cbs.on_train_end(logs=epoch_logs)
    return keras_compat.callback_list_history(cbs)
