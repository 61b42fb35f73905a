"""One process of a multi-process run, started by test_multiprocess.py.

    python multiprocess_worker.py '{"engine": "jax", "task": "train",
        "process": 0, "processes": 2, "devices": 2, "port": 12345,
        "out": "/tmp/run"}'

Every process talks only over 127.0.0.1. Each task writes what it ends
with to `out` as .npz files (the whole values, gathered from every
process), and prints one JSON line of facts for the test.
"""

import json
import os
import sys
import threading
import time
from pathlib import Path

SPEC = json.loads(sys.argv[1])


def leave_with_the_test(parent):
    """Ends this process when the test that started it is gone, whatever
    this process is doing (a collective waiting for a lost peer, say)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


threading.Thread(target=leave_with_the_test, args=(os.getppid(),), daemon=True).start()
OUT = Path(SPEC["out"])
PROCESS, PROCESSES = SPEC["process"], SPEC["processes"]
os.environ["KERAS_BACKEND"] = SPEC["engine"]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if SPEC["engine"] == "jax":
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={SPEC['devices']}"
    )
    import jax

    if PROCESSES > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            f"127.0.0.1:{SPEC['port']}",
            num_processes=PROCESSES,
            process_id=PROCESS,
            initialization_timeout=60,
        )
else:
    workers = [f"127.0.0.1:{port}" for port in SPEC["ports"]]
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": PROCESS},
        }
    )
    import tensorflow as tf

import keras  # noqa: E402
import numpy as np  # noqa: E402

from adafactor import Adafactor  # noqa: E402

keras.config.disable_traceback_filtering()

VOCABULARY, WIDTH, TOKENS, ROWS, BATCH = 64, 16, 4, 64, 16
rng = np.random.default_rng(0)
X = rng.integers(0, VOCABULARY, (ROWS, TOKENS)).astype("int32")
Y = rng.standard_normal((ROWS, 4)).astype("float32")


def build():
    """An embedding (row-sparse gradients) beside dense layers, with weights
    that do not depend on the engine or the number of processes."""
    # Every process must create its variables with the same values.
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((TOKENS,), dtype="int32"),
            keras.layers.Embedding(VOCABULARY, WIDTH, name="embedding"),
            keras.layers.Flatten(),
            keras.layers.Dense(WIDTH, activation="tanh", name="dense_in"),
            keras.layers.Dense(4, name="dense_out"),
        ]
    )
    weights = np.random.default_rng(1)
    model.set_weights(
        [
            0.3 * weights.standard_normal(w.shape).astype("float32")
            for w in model.weights
        ]
    )
    return model


GRADIENTS = {}


def recording(optimizer):
    """The optimizer, recording the kind of gradient each variable is given
    (while its step is traced)."""
    step = optimizer.update_step

    def update_step(gradient, variable, learning_rate):
        # A group of small variables is given their gradients in a list.
        members = getattr(variable, "variables", (variable,))
        kinds = gradient if isinstance(gradient, list) else [gradient]
        for member, kind in zip(members, kinds):
            GRADIENTS[member.name] = type(kind).__name__
        return step(gradient, variable, learning_rate)

    optimizer.update_step = update_step
    return optimizer


BATCHES = set()
FED = set()  # the rows this process feeds to each fit()


def watching(model):
    """The model, recording the size of the global batches its training step
    is traced with."""
    step = model.train_step

    def train_step(*args):
        BATCHES.add(int(keras.tree.flatten(args[-1])[0].shape[0]))
        return step(*args)

    model.train_step = train_step
    return model


def compile(model, optimizer=Adafactor):
    model.compile(optimizer=recording(optimizer(learning_rate=0.05)), loss="mse")
    return watching(model)


# Under DataParallel across jax processes, each process feeds its own share
# of every global batch. Under ModelParallel the batch axis is within a
# process, and tf.distribute shards the global batches itself.
SHARED = SPEC["engine"] == "jax" and SPEC.get("layout") == "data" and PROCESSES > 1


def local_rows(array):
    """This process's share of every global batch."""
    if not SHARED:
        return array
    share = BATCH // PROCESSES
    batches = array.reshape((-1, PROCESSES, share) + array.shape[1:])
    return batches[:, PROCESS].reshape((-1,) + array.shape[1:])


def fit(model, epochs, initial_epoch=0, callbacks=()):
    batch = BATCH // PROCESSES if SHARED else BATCH
    FED.add(len(local_rows(X)))
    model.fit(
        local_rows(X),
        local_rows(Y),
        batch_size=batch,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks),
    )
    return model


def whole(variable):
    """A variable's whole value, gathered from every process that holds part
    of it."""
    value = variable.value
    if SPEC["engine"] == "jax" and not value.is_fully_addressable:
        from jax.experimental import multihost_utils

        value = multihost_utils.process_allgather(value, tiled=True)
    return np.asarray(keras.ops.convert_to_numpy(value))


def dump(model, name):
    # By position: a loaded model's variable paths may differ from the
    # trained model's.
    state = {f"weight:{i}": whole(v) for i, v in enumerate(model.weights)}
    state |= {
        f"optimizer:{i}": whole(v) for i, v in enumerate(model.optimizer.variables)
    }
    np.savez(OUT / f"{name}-{PROCESS}.npz", **state)


def jax_distribution(layout):
    devices = np.array(jax.devices())
    if layout == "data":
        return keras.distribution.DataParallel(
            devices=list(devices), auto_shard_dataset=False
        )
    # The "model" axis spans the processes: each process holds one half of
    # every sharded variable, and the batch axis is the devices of one
    # process, so that every process feeds the whole global batch.
    mesh = keras.distribution.DeviceMesh(
        (2, 2), ["batch", "model"], devices.reshape(2, 2).T
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    # Keras 3.15 matches a key against a whole variable path: a key that
    # matches nothing leaves the variable replicated, silently.
    layout_map[".*/dense_in/kernel"] = (None, "model")
    layout_map[".*/embedding/embeddings"] = ("model", None)
    return keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch", auto_shard_dataset=False
    )


def shards(model):
    """Each variable's whole shape, beside the extent of the part this
    process holds (over all of its devices)."""

    def held(value):
        shards = [shard.index for shard in value.addressable_shards]
        return [
            len({i for index in shards for i in range(*index[axis].indices(size))})
            for axis, size in enumerate(value.shape)
        ]

    return {
        v.path: [list(v.shape), held(v.value)]
        for v in list(model.weights) + list(model.optimizer.variables)
        if len(v.shape)
    }


class Epochs(keras.callbacks.Callback):
    """Records the epochs a fit() runs and the step it starts from."""

    def __init__(self, facts):
        super().__init__()
        self.facts = facts

    def on_train_begin(self, logs=None):
        self.facts["first_step"] = int(self.model.optimizer.iterations)
        self.facts["epochs"] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.facts["epochs"].append(epoch)


class Stall(keras.callbacks.Callback):
    """Signals the test from the middle of an epoch, and waits to be killed."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            (OUT / f"stalled-{PROCESS}").write_text(str(os.getpid()))
            time.sleep(600)


def multi_worker_mirrored(facts):
    """Two epochs under MultiWorkerMirroredStrategy; one process runs them
    under the default strategy, with the same global batches.

    Keras 3.15's fit() fails under this strategy whatever the optimizer
    (keras-team/keras#20585): the worker records how, with Keras's SGD as
    well, and trains with the custom loop that tf.distribute documents."""
    strategy = (
        tf.distribute.MultiWorkerMirroredStrategy()
        if PROCESSES > 1
        else tf.distribute.get_strategy()
    )
    facts["replicas"] = strategy.num_replicas_in_sync
    if PROCESSES > 1:
        facts["fit"] = {}
        for name, optimizer in [
            ("ours", Adafactor),
            ("keras SGD", keras.optimizers.SGD),
        ]:
            with strategy.scope():
                model = compile(build(), optimizer)
            try:
                fit(model, 1)
                facts["fit"][name] = "trained"
            except Exception as error:  # noqa: BLE001 - the test reads it
                message = str(error).splitlines()[0]
                facts["fit"][name] = f"{type(error).__name__}: {message}"
        for record in (GRADIENTS, BATCHES, FED):
            record.clear()
    with strategy.scope():
        model = compile(build())
    data = tf.data.Dataset.from_tensor_slices((X, Y)).batch(BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    batches = strategy.experimental_distribute_dataset(data.with_options(options))

    def replica_step(x, y):
        BATCHES.add(x.shape[0])  # the rows of one replica, while traced
        with tf.GradientTape() as tape:
            error = tf.reduce_mean(tf.square(model(x, training=True) - y), axis=-1)
            loss = tf.reduce_sum(error) / BATCH  # a mean over the global batch
        variables = model.trainable_variables
        model.optimizer.apply(tape.gradient(loss, variables), variables)

    @tf.function
    def step(x, y):
        strategy.run(replica_step, (x, y))

    for _ in range(2):
        for x, y in batches:
            step(x, y)
    dump(model, "trained")


def train(facts, layout):
    """Two epochs, saved, then a third: the run that was never interrupted."""
    # Under ModelParallel across processes no process holds a whole
    # variable: Keras saves such a model through Orbax.
    checkpoints = (
        []
        if layout == "data"
        else [
            keras.callbacks.OrbaxCheckpoint(
                str(OUT / "orbax"), save_on_background=False
            )
        ]
    )
    model = fit(compile(build()), 2, callbacks=checkpoints)
    dump(model, "trained")
    facts["shards"] = shards(model)
    # Every process saves, for saving gathers replicated variables in a
    # collective way; the file of process 0 is the one kept.
    path = OUT / f"trained-{PROCESS}.keras"
    try:
        model.save(path)
        facts["save"] = "saved"
    except RuntimeError as error:
        facts["save"] = str(error)[:300]
        path.unlink(missing_ok=True)  # Keras leaves the file it began
    dump(fit(model, 3, initial_epoch=2), "uninterrupted")


def resume(facts, layout):
    """The third epoch, from what train() saved after two."""
    if layout == "data":
        # Loading creates the variables first: with the same values in
        # every process, as in build().
        keras.utils.set_random_seed(0)
        model = keras.saving.load_model(Path(SPEC["source"]) / "trained-0.keras")
        recording(model.optimizer)
        watching(model)
    else:
        model = compile(build())
        model.optimizer.build(model.trainable_variables)
        model.load_weights(str(Path(SPEC["source"]) / "orbax"))
    facts["shards"] = shards(model)
    dump(fit(model, 3, initial_epoch=2), "resumed")


def backup(facts, layout):
    """Three epochs with BackupAndRestore; the process told to stall waits
    in the middle of an epoch, to be killed."""
    model = compile(build())
    model.optimizer.build(model.trainable_variables)
    # Each process keeps its own backup: BackupAndRestore writes from every
    # process, and two writers of one file would race. Epochs() runs after
    # it, so it sees the restored step.
    callbacks = [
        keras.callbacks.BackupAndRestore(str(OUT / f"backup-{PROCESS}")),
        Epochs(facts),
    ]
    if SPEC.get("stall") and PROCESS == 1:
        callbacks.append(Stall(*SPEC["stall"]))
    dump(fit(model, 3, callbacks=callbacks), "restored")


def run():
    facts = {"processes": PROCESSES}
    if SPEC["engine"] == "tensorflow":
        multi_worker_mirrored(facts)
    else:
        keras.distribution.set_distribution(jax_distribution(SPEC["layout"]))
        facts["devices"] = len(jax.devices())
        {"train": train, "resume": resume, "backup": backup}[SPEC["task"]](
            facts, SPEC["layout"]
        )
    facts |= {"gradients": GRADIENTS, "batches": sorted(BATCHES), "fed": sorted(FED)}
    return facts


if __name__ == "__main__":
    try:
        facts = run()
    except BaseException:
        # A process that fails leaves at once: at exit, jax.distributed would
        # wait for the processes that wait for this one.
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    print(json.dumps(facts))
    sys.stdout.flush()
    if SPEC["engine"] == "jax" and PROCESSES > 1:
        jax.distributed.shutdown()
