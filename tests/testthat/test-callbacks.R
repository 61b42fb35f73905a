test_that("callback_adafactor_statistics() logs each epoch into the history", {
  skip_if_no_keras()
  keras <- keras_py()
  np <- reticulate::import("numpy", convert = FALSE)
  x <- np$random$default_rng(2L)$standard_normal(c(64L, 4L))$astype("float32")
  y <- np$sum(x, axis = 1L, keepdims = TRUE)
  model <- keras$Sequential(list(keras$Input(list(4L)), keras$layers$Dense(1L)))
  model$compile(
    optimizer = optimizer_adafactor(
      learning_rate = 0.5, skip_nonfinite = TRUE, record_statistics = TRUE
    ),
    loss = "mse"
  )
  callback <- callback_adafactor_statistics()
  expect_true(inherits(callback, "keras.src.callbacks.callback.Callback"))
  history <- model$fit(
    x, y, epochs = 3L, batch_size = 16L, verbose = 0L, callbacks = list(callback)
  )$history
  names <- c(
    "adafactor_step_size", "adafactor_update_rms", "adafactor_clip_fraction",
    "adafactor_skipped_steps"
  )
  expect_true(all(names %in% names(history)))
  # rho_t = min(0.5, 1 / sqrt(t)) after 4, 8 and 12 steps.
  expect_equal(unlist(history$adafactor_step_size), 1 / sqrt(c(4, 8, 12)),
    tolerance = 1e-6
  )
  expect_identical(unlist(history$adafactor_skipped_steps), c(0, 0, 0))
  statistics <- model$optimizer$statistics()
  expect_equal(
    as.numeric(statistics$adafactor_update_rms$numpy()),
    history$adafactor_update_rms[[3]],
    tolerance = 1e-6
  )
})

test_that("keras3's plot() shows the logged statistics", {
  skip_if_not_installed("keras3")
  skip_if_not_installed("ggplot2")
  skip_if_no_keras()
  model <- keras3::keras_model_sequential(input_shape = 4) |>
    keras3::layer_dense(1)
  keras3::compile(model,
    optimizer = optimizer_adafactor(record_statistics = TRUE), loss = "mse"
  )
  x <- matrix(stats::rnorm(64), 16)
  history <- keras3::fit(model, x, rowSums(x),
    epochs = 3, verbose = 0,
    callbacks = list(callback_adafactor_statistics())
  )
  expect_length(history$metrics$adafactor_step_size, 3)
  plot <- plot(history)
  expect_s3_class(plot, "ggplot")
  expect_true("adafactor_update_rms" %in% plot$data$metric)
})

test_that("an optimizer that records nothing is refused with its option named", {
  skip_if_no_keras()
  keras <- keras_py()
  model <- keras$Sequential(list(keras$Input(list(4L)), keras$layers$Dense(1L)))
  model$compile(optimizer = optimizer_adafactor(), loss = "mse")
  x <- matrix(stats::rnorm(64), 16)
  expect_error(
    model$fit(x, as.matrix(rowSums(x)),
      verbose = 0L, callbacks = list(callback_adafactor_statistics())
    ),
    "record_statistics = TRUE"
  )
})
