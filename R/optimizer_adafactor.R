#' Adafactor optimizer with sublinear memory
#'
#' Adafactor (Shazeer & Stern, 2018) keeps, for every weight matrix, only the
#' running means of the squared gradient over its rows and over its columns,
#' instead of a full second moment. This optimizer stores exactly that and
#' nothing more: for a variable of rank 2 or more, a row statistic of shape
#' `shape[:-1]` and a column statistic of shape `shape[:-2] + shape[-1:]`; for
#' a variable of rank 0 or 1, a full second moment. When gradients are of
#' dimension > 2, the last two dimensions are factored (the two largest with
#' `factor_dims = "largest"`).
#'
#' [exclude_from_factoring()], shaped like Keras's
#' `exclude_from_weight_decay()`, keeps a full second moment for chosen
#' variables: for example `optimizer_adafactor() |>
#' exclude_from_factoring(var_names = "embeddings")`. The choice is saved with
#' the model.
#'
#' The arguments, their order and their defaults are those of keras3's
#' `optimizer_adafactor()`; the options after `gradient_accumulation_steps`
#' go beyond it, and their defaults keep its behaviour. The result is the
#' same kind of object: a
#' Keras 3 optimizer, usable in `compile()`, custom training loops, and saved
#' and loaded with the model.
#'
#' Differences from `keras.optimizers.Adafactor`:
#' * it keeps no parameter-sized buffer besides the factored statistics;
#' * a gradient with an all-zero row and column does not produce `NaN`;
#' * `relative_step` is applied as documented: only to a constant
#'   `learning_rate`.
#'
#' @section R specifics:
#' * `NULL` becomes Python's `None`. A 1x1 matrix or array counts as its one
#'   value. What R does not store as a plain number, such as a `Date`, a
#'   time, a `factor` or bit64's `integer64`, is refused.
#' * `ema_overwrite_frequency`, `gradient_accumulation_steps`,
#'   `min_dim_size_to_factor` and `decay_offset` may be given as doubles
#'   (`10`); whole numbers within R's integer range reach Python as
#'   integers. They go up to 2147483647: JAX counts steps in 32-bit integers.
#' * The step computes in float32: every number must be finite there and keep
#'   to its rule once rounded (`learning_rate = 1e-320` is 0 in float32,
#'   `beta_1 = 0.99999999` is 1).
#' * `learning_rate` may be an R function of no arguments. It is called by
#'   Keras to get the rate; in a compiled training step that happens when the
#'   step is traced, so the value is then fixed. It must return a single
#'   number: it is called once when the optimizer is made, to check that (a
#'   function that fails then, because it needs the optimizer itself, is
#'   called again by Keras), and each later value is checked too. A wrong
#'   value found later fails with the same message, but as a plain error:
#'   reticulate passes an R error raised while Python calls R back to R
#'   without its class. A saved model cannot hold an R function: saving
#'   stores the rate's current value instead, with an R warning of class
#'   `adafactor_warning`, and the loaded model trains at that constant rate.
#'   Use a `LearningRateSchedule` (keras3's `learning_rate_schedule_*()`) to
#'   save a schedule.
#' * R checks what only R can see (the type, length 1, `NA`, a function's
#'   arguments) before Python starts. The allowed values are the Python
#'   class's rules and Keras's: their message is passed on. Either way the
#'   error has class `adafactor_argument_error` and names the argument, the
#'   value given and what is allowed.
#'
#' @param learning_rate A number > 0, a `LearningRateSchedule` instance, or an
#'   R function that takes no arguments and returns the actual value to use.
#'   The learning rate. Defaults to `0.001`.
#' @param beta_2_decay A number < 0, defaults to `-0.8`. The decay rate of
#'   `beta_2`: `beta_2` at step `t` is `1 - t^beta_2_decay`.
#' @param epsilon_1 A number from `2^-102` (1.97e-31) to `2^126` (8.5e37),
#'   defaults to `1e-30`. A small offset added to the squared gradient, to
#'   keep the denominator away from 0. Squares below float32's least normal
#'   number (`2^-126`) are lost, and a smaller `epsilon_1` would not outweigh
#'   them; a larger one overflows float32 in the statistics.
#' @param epsilon_2 A number >= 0, defaults to `1e-3`. A small offset to avoid
#'   the learning rate becoming too small by time: steps are scaled by
#'   `max(epsilon_2, RMS(weights))`.
#' @param clip_threshold A number >= 1.1754944e-38, defaults to `1`. Clipping
#'   threshold of the update's RMS. This is a part of the Adafactor algorithm,
#'   independent from `clipnorm`, `clipvalue`, and `global_clipnorm`.
#' @param relative_step `TRUE` or `FALSE`, defaults to `TRUE`. If
#'   `learning_rate` is a constant and `relative_step = TRUE`, the learning
#'   rate is adjusted based on the current iteration `t` to
#'   `min(learning_rate, 1 / sqrt(t))`. A schedule or a function is used as
#'   it is.
#' @param weight_decay `NULL` or a number >= 0. If set, weight decay is
#'   applied.
#' @param clipnorm `NULL` or a number > 0. If set, the gradient of each weight
#'   is individually clipped so that its norm is no higher than this value.
#' @param clipvalue `NULL` or a number >= 0. If set, the gradient of each
#'   weight is clipped to be no higher than this value.
#' @param global_clipnorm `NULL` or a number > 0. If set, the gradient of all
#'   weights is clipped so that their global norm is no higher than this
#'   value.
#' @param use_ema `TRUE` or `FALSE`, defaults to `FALSE`. If `TRUE`, an
#'   exponential moving average (EMA) of the model's weights is kept (updated
#'   after each training batch), and the weights are periodically overwritten
#'   with their moving average.
#' @param ema_momentum A number in `[0, 1]`, defaults to `0.99`. Only used if
#'   `use_ema = TRUE`: `new_average = ema_momentum * old_average +
#'   (1 - ema_momentum) * current_variable_value`.
#' @param ema_overwrite_frequency `NULL` or a whole number >= 1. Only used if
#'   `use_ema = TRUE`. Every `ema_overwrite_frequency` iterations, the model
#'   variables are overwritten by their moving average. If `NULL`, this
#'   happens only when you call `optimizer$finalize_variable_values()`, which
#'   `fit()` does after its last epoch.
#' @param name A string, the name of the optimizer and the prefix of its
#'   variables' names: letters, digits, `_`, `.`, `>`, `-` and backslashes,
#'   starting with a letter, a digit or `.` (a valid TensorFlow name scope).
#'   `NULL` takes Keras's default, `"adafactor"` (numbered after the first).
#' @param ... For forward and backward compatibility: keyword arguments of the
#'   Python class that have no R argument yet. There are none at present, so
#'   any argument here is refused with an error.
#' @param loss_scale_factor `NULL` or a number > 0. If a number, the loss is
#'   multiplied by it before computing gradients, and the gradients by its
#'   inverse before updating variables. Useful for preventing underflow
#'   during mixed precision training.
#' @param gradient_accumulation_steps `NULL` or a whole number >= 2. If set,
#'   model and optimizer variables are updated only every
#'   `gradient_accumulation_steps` steps, with the average of the gradients
#'   since the last update ("gradient accumulation").
#' @param beta_1 `NULL` or a number in `[0, 1)`. If set, the update is
#'   smoothed by first-moment momentum, as in the paper, Mesh TensorFlow,
#'   optax and Hugging Face: an exponential moving average of the final
#'   (scaled and clipped) update. It adds one parameter-sized buffer per
#'   variable; without it there is none.
#' @param momentum_dtype The type of the momentum buffer: `"float32"` (the
#'   default), `"bfloat16"` (half the memory), `"float16"` or `"float64"`.
#' @param scale_parameter `TRUE` or `FALSE`, defaults to `TRUE`: steps are
#'   scaled by `max(epsilon_2, RMS(weights))`. `FALSE` takes plain steps of
#'   the learning rate (Hugging Face's `scale_parameter`, optax's
#'   `multiply_by_parameter_scale`).
#' @param min_dim_size_to_factor `NULL` or a whole number >= 1. A variable is
#'   factored only when both of the dimensions it would be factored over (its
#'   last two, or its two largest with `factor_dims = "largest"`) are at least this
#'   size; others keep a full second moment (as in optax). `NULL`, the
#'   default, factors every variable of rank 2 or more.
#' @param factored `TRUE` or `FALSE`, defaults to `TRUE`. `FALSE` keeps a full
#'   second moment for every variable (Adam-like memory).
#' @param decay_offset A whole number >= 0, defaults to `0`. The `beta_2`
#'   schedule counts steps from this iteration on, restarting it for
#'   fine-tuning (optax's `decay_offset`); before it, `beta_2` is 0.
#' @param stochastic_rounding `TRUE` or `FALSE`, defaults to `FALSE`. With
#'   `TRUE`, a bfloat16 variable's new value is rounded stochastically, not to
#'   nearest, so that updates smaller than half a unit in the last place are
#'   kept on average. Uses Keras's random generator: reproducible with
#'   `keras$utils$set_random_seed()`. Other dtypes are unaffected.
#' @param beta_2_cap `NULL` or a number in `(0, 1)`. If set, the decay of the
#'   second moment is capped: `beta_2_t = min(beta_2_t, beta_2_cap)`
#'   (big_vision's `beta2_cap`: 0.999 there, lower against instabilities).
#' @param beta_2 `NULL` or a number in `(0, 1)`. If set, the second moment
#'   decays at this constant rate with the paper's bias correction,
#'   `beta_2_t = beta_2 (1 - beta_2^(t-1)) / (1 - beta_2^t)` (Mesh
#'   TensorFlow's `adafactor_decay_rate_adam`), and `beta_2_decay` is not
#'   used: giving another `beta_2_decay` than the default is an error.
#' @param factor_dims `"last"` (the default) or `"largest"`: the two axes a
#'   variable of rank 3 or more is factored over, its last two (as Keras and
#'   torch) or its two largest (as optax and T5X), the others kept as batch
#'   axes. For a `(768, 12, 64)` attention kernel, `"last"` keeps 58,368
#'   statistics and `"largest"` 9,984.
#' @param skip_nonfinite `TRUE` or `FALSE`, defaults to `FALSE`. With `TRUE`, a
#'   step in which any gradient holds a `NaN` or an infinity changes nothing:
#'   no weight, statistic, momentum or `iterations` (T5X's
#'   `skip_nan_updates`), as a `LossScaleOptimizer`'s skipped step, without
#'   loss scaling. It costs one reduction over each gradient. Not under a
#'   `tf.distribute` strategy. The check is of the gradients before Keras
#'   divides them by `loss_scale_factor` or clips them.
#' @param record_statistics `TRUE` or `FALSE`, defaults to `FALSE`. With
#'   `TRUE`, each step records what it did (the step size, the update's RMS
#'   before the clip, the fraction of variables clipped and the number of
#'   steps skipped) in four scalar variables, which
#'   [callback_adafactor_statistics()] logs during `fit()` and the
#'   optimizer's method `statistics()` returns. The optimizer does not save
#'   them.
#'
#' @return A Keras 3 optimizer: the Python object `adafactor.Adafactor`, a
#'   subclass of `keras.optimizers.Optimizer`. It needs Python (>=
#'   `r floors[["python"]]`) with keras (>= `r floors[["keras"]]`); see
#'   [install_adafactor()].
#'
#' @references Shazeer, N. and Stern, M. (2018). Adafactor: Adaptive Learning
#'   Rates with Sublinear Memory Cost. ICML. <https://arxiv.org/abs/1804.04235>
#'
#' @examples
#' \dontshow{if (adafactor_available()) withAutoprint(\{ # examplesIf}
#' opt <- optimizer_adafactor(learning_rate = 0.01, relative_step = FALSE)
#' opt$get_config()$learning_rate
#'
#' # A learning rate given as an R function of no arguments
#' opt <- optimizer_adafactor(learning_rate = function() 0.005)
#'
#' # Use it wherever Keras takes an optimizer:
#' keras <- reticulate::import("keras")
#' model <- keras$Sequential(list(keras$Input(list(4L)), keras$layers$Dense(1L)))
#' model$compile(optimizer = opt, loss = "mse")
#' \dontshow{\}) # examplesIf}
#' @export
optimizer_adafactor <- function(learning_rate = 0.001,
                                beta_2_decay = -0.8,
                                epsilon_1 = 1e-30,
                                epsilon_2 = 0.001,
                                clip_threshold = 1,
                                relative_step = TRUE,
                                weight_decay = NULL,
                                clipnorm = NULL,
                                clipvalue = NULL,
                                global_clipnorm = NULL,
                                use_ema = FALSE,
                                ema_momentum = 0.99,
                                ema_overwrite_frequency = NULL,
                                name = "adafactor",
                                ...,
                                loss_scale_factor = NULL,
                                gradient_accumulation_steps = NULL,
                                beta_1 = NULL,
                                momentum_dtype = "float32",
                                scale_parameter = TRUE,
                                min_dim_size_to_factor = NULL,
                                factored = TRUE,
                                decay_offset = 0,
                                stochastic_rounding = FALSE,
                                beta_2_cap = NULL,
                                beta_2 = NULL,
                                factor_dims = "last",
                                skip_nonfinite = FALSE,
                                record_statistics = FALSE) {
  args <- python_args(mget(names(argument_types), environment()), list(...))
  pass_on_python_errors(do.call(adafactor_python()$Adafactor, args))
}
