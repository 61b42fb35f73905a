#' Log what Adafactor's steps did
#'
#' A Keras callback for `fit()` that writes, at the end of each epoch, what
#' the epoch's last step of an `optimizer_adafactor(record_statistics =
#' TRUE)` did into the epoch's logs, and so into the training history. With
#' keras3 attached, `plot(history)` shows them beside the loss. An optimizer
#' made without `record_statistics = TRUE` is refused when training starts.
#'
#' * `adafactor_step_size`: the step size \eqn{\rho_t}, the learning rate
#'   after `relative_step`'s cap, before the parameter scale
#'   `max(epsilon_2, RMS(weights))` (which is each variable's own);
#' * `adafactor_update_rms`: the RMS of the update before the clip, averaged
#'   over the variables;
#' * `adafactor_clip_fraction`: the fraction of variables whose update was
#'   clipped to `clip_threshold`;
#' * `adafactor_skipped_steps`: the number of steps skipped by
#'   `skip_nonfinite = TRUE`.
#'
#' The values are read once per epoch, after its steps, and the step itself
#' does not wait for them. In a custom training loop, the optimizer's method
#' `statistics()` gives the same values. The optimizer does not save them: a
#' loaded model's optimizer starts them again from zero, and a file loads
#' into an optimizer made with or without `record_statistics`. A
#' `LossScaleOptimizer` around it (as under a `mixed_float16` policy) saves
#' them, though, and its file loads only into one that records them too.
#'
#' @return A Keras callback, for `fit(callbacks = list(...))`: the Python
#'   object `adafactor.StatisticsLogger`.
#'
#' @examples
#' \dontshow{if (adafactor_available()) withAutoprint(\{ # examplesIf}
#' keras <- reticulate::import("keras")
#' model <- keras$Sequential(list(keras$Input(list(4L)), keras$layers$Dense(1L)))
#' model$compile(
#'   optimizer = optimizer_adafactor(record_statistics = TRUE), loss = "mse"
#' )
#' x <- matrix(stats::rnorm(64), 16)
#' history <- model$fit(x, as.matrix(rowSums(x)),
#'   epochs = 2L, verbose = 0L,
#'   callbacks = list(callback_adafactor_statistics())
#' )
#' history$history$adafactor_step_size
#' \dontshow{\}) # examplesIf}
#' @export
callback_adafactor_statistics <- function() {
  adafactor_python()$StatisticsLogger()
}
