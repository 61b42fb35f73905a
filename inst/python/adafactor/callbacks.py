"""A Keras callback that shows what Adafactor's steps did."""

import keras
from keras import ops

from adafactor.optimizer import Adafactor


class StatisticsLogger(keras.callbacks.Callback):
    """Writes `Adafactor.statistics()` of each epoch's last step into the
    epoch's logs, and so into the `History` that `fit()` returns:
    `adafactor_step_size` (rho_t), `adafactor_update_rms` (RMS(U_t) before
    the clip, averaged over the variables), `adafactor_clip_fraction` and
    `adafactor_skipped_steps`.

    The values are read once per epoch, after the epoch's steps. The model's
    optimizer must be an `Adafactor` made with `record_statistics=True`, or a
    `LossScaleOptimizer` around one.
    """

    def on_train_begin(self, logs=None):
        self._adafactor()._require_statistics()  # refused before any step

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(
                {
                    name: float(ops.convert_to_numpy(value))
                    for name, value in self._adafactor().statistics().items()
                }
            )

    def _adafactor(self):
        optimizer = self.model.optimizer
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if not isinstance(inner, Adafactor):
            raise TypeError(
                "StatisticsLogger needs a model compiled with an Adafactor "
                f"optimizer. Received: optimizer of type {type(optimizer).__name__}"
            )
        return inner
