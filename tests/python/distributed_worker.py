"""Run in a fresh process by test_distributed.py: device set-up must happen
before the backend starts. Prints one JSON line of results."""

import contextlib
import json
import os
import sys

MODE = sys.argv[1]
if MODE == "mirrored":
    os.environ["KERAS_BACKEND"] = "tensorflow"
else:
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

if MODE == "mirrored":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402

from adafactor import Adafactor, StatisticsLogger  # noqa: E402

rng = np.random.default_rng(0)
X = rng.standard_normal((64, 8)).astype("float32")
Y = rng.standard_normal((64, 4)).astype("float32")


def build():
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="tanh", name="dense_in"),
            keras.layers.Dense(4, name="dense_out"),
        ]
    )


keras.utils.set_random_seed(0)
INITIAL = build().get_weights()


def train(scope=None):
    with scope or contextlib.nullcontext():
        model = build()
        model.set_weights(INITIAL)
        optimizer = Adafactor(learning_rate=0.05, record_statistics=True)
        model.compile(optimizer=optimizer, loss="mse")
    logger = StatisticsLogger()
    history = model.fit(
        X, Y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[logger]
    )
    # What each epoch's last step did, as StatisticsLogger logged it.
    model.logged = {k: v for k, v in history.history.items() if k != "loss"}
    return model


def max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def logged_diff(model):
    """The largest relative difference from the single-device run's logs."""
    return max(
        abs(a - b) / max(abs(b), 1e-12)
        for name, values in SINGLE.logged.items()
        for a, b in zip(model.logged[name], values, strict=True)
    )


SINGLE = train()
single = SINGLE.get_weights()
result = {"logged": sorted(SINGLE.logged)}
if MODE == "mirrored":
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result["replicas"] = strategy.num_replicas_in_sync
    model = train(strategy.scope())
    result["max_diff"] = max_diff(model.get_weights(), single)
    result["logged_diff"] = logged_diff(model)
else:
    devices = keras.distribution.list_devices()
    result["devices"] = len(devices)
    if MODE == "data_parallel":
        distribution = keras.distribution.DataParallel(devices=devices)
    else:
        mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"], devices)
        layout_map = keras.distribution.LayoutMap(mesh)
        layout_map[".*dense.*kernel"] = (None, "model")
        distribution = keras.distribution.ModelParallel(
            layout_map=layout_map, batch_dim_name="batch"
        )
    keras.distribution.set_distribution(distribution)
    model = train()
    keras.distribution.set_distribution(None)
    result["max_diff"] = max_diff(model.get_weights(), single)
    result["logged_diff"] = logged_diff(model)
    optimizer = model.optimizer
    result["layouts"] = {
        # A PartitionSpec's axes (its repr differs between jax releases).
        v.name: [list(v._layout.axes), list(v.value.sharding.spec)]
        for v in optimizer.variables
        if getattr(v, "_layout", None) is not None and len(v.shape)
    }
print(json.dumps(result))
