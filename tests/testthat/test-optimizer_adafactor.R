test_that("the signature is keras3's optimizer_adafactor()", {
  expected <- alist(
    learning_rate = 0.001, beta_2_decay = -0.8, epsilon_1 = 1e-30,
    epsilon_2 = 0.001, clip_threshold = 1, relative_step = TRUE,
    weight_decay = NULL, clipnorm = NULL, clipvalue = NULL,
    global_clipnorm = NULL, use_ema = FALSE, ema_momentum = 0.99,
    ema_overwrite_frequency = NULL, name = "adafactor", ... = ,
    loss_scale_factor = NULL, gradient_accumulation_steps = NULL,
    # beyond keras3, after its arguments:
    beta_1 = NULL, momentum_dtype = "float32", scale_parameter = TRUE,
    min_dim_size_to_factor = NULL, factored = TRUE, decay_offset = 0,
    stochastic_rounding = FALSE, beta_2_cap = NULL, beta_2 = NULL,
    factor_dims = "last", skip_nonfinite = FALSE, record_statistics = FALSE
  )
  expect_identical(formals(optimizer_adafactor), as.pairlist(expected))
})

test_that("the defaults reach Python unchanged", {
  skip_if_no_keras()
  ours <- optimizer_adafactor()$get_config()
  python <- adafactor_py$Adafactor()$get_config()
  expect_identical(ours, python)
  expect_null(ours$weight_decay)
  expect_null(ours$gradient_accumulation_steps)
})

test_that("every argument reaches Python", {
  skip_if_no_keras()
  args <- list(
    learning_rate = 0.02, beta_2_decay = -0.5, epsilon_1 = 1e-20,
    epsilon_2 = 0.01, clip_threshold = 0.5, relative_step = FALSE,
    weight_decay = 0.1, clipnorm = 2, use_ema = TRUE, ema_momentum = 0.9,
    ema_overwrite_frequency = 5, name = "mine", loss_scale_factor = 8,
    gradient_accumulation_steps = 3, beta_1 = 0.9, momentum_dtype = "bfloat16",
    scale_parameter = FALSE, min_dim_size_to_factor = 16, factored = FALSE,
    decay_offset = 100, stochastic_rounding = TRUE, beta_2_cap = 0.95,
    factor_dims = "largest", skip_nonfinite = TRUE, record_statistics = TRUE
  )
  config <- do.call(optimizer_adafactor, args)$get_config()
  for (name in names(args)) {
    expect_equal(config[[name]], args[[name]], tolerance = 1e-7, label = name)
  }
  # beta_2 replaces beta_2_decay, which stays at its default.
  config <- optimizer_adafactor(beta_2 = 0.99)$get_config()
  expect_equal(config$beta_2, 0.99, tolerance = 1e-7)
})

test_that("learning_rate may be a schedule or an R function", {
  skip_if_no_keras()
  schedule <- keras_py()$optimizers$schedules$ExponentialDecay(0.1, 10L, 0.5)
  opt <- optimizer_adafactor(learning_rate = schedule)
  expect_identical(opt$get_config()$learning_rate$class_name, "ExponentialDecay")

  opt <- optimizer_adafactor(learning_rate = function() 0.25)
  expect_equal(as.numeric(opt$learning_rate), 0.25)
  opt <- optimizer_adafactor(learning_rate = 1L)
  expect_equal(opt$get_config()$learning_rate, 1)
})

test_that("a model built through reticulate trains, saves and loads", {
  skip_if_no_keras()
  keras <- keras_py()
  np <- reticulate::import("numpy", convert = FALSE)
  rng <- np$random$default_rng(1L)
  x <- rng$standard_normal(c(64L, 4L))$astype("float32")
  y <- np$sum(x, axis = 1L, keepdims = TRUE)
  model <- keras$Sequential(list(
    keras$Input(list(4L)), keras$layers$Dense(8L, activation = "tanh"),
    keras$layers$Dense(1L)
  ))
  model$compile(
    optimizer = optimizer_adafactor(learning_rate = 0.05, record_statistics = TRUE),
    loss = "mse"
  )
  history <- model$fit(x, y, epochs = 10L, batch_size = 16L, verbose = 0L)
  losses <- unlist(history$history$loss)
  expect_lt(losses[length(losses)], losses[1] / 2)

  path <- tempfile(fileext = ".keras")
  model$save(path)
  loaded <- keras$models$load_model(path)
  expect_identical(class(loaded$optimizer)[1], "adafactor.optimizer.Adafactor")
  expect_identical(loaded$optimizer$get_config(), model$optimizer$get_config())
  # All but the statistics of the last step, which are not saved.
  saved <- function(opt) {
    kept <- Filter(function(v) !startsWith(v$name, "adafactor_"), opt$variables)
    lapply(kept, function(v) v$numpy())
  }
  expect_length(saved(model$optimizer), length(model$optimizer$variables) - 4)
  expect_identical(saved(loaded$optimizer), saved(model$optimizer))
})

test_that("keras3's compile() and fit() take the optimizer", {
  skip_if_not_installed("keras3")
  skip_if_no_keras()
  model <- keras3::keras_model_sequential(input_shape = 4) |>
    keras3::layer_dense(1)
  keras3::compile(model, optimizer = optimizer_adafactor(), loss = "mse")
  x <- matrix(stats::rnorm(64), 16)
  history <- keras3::fit(model, x, rowSums(x), epochs = 3, verbose = 0)
  expect_length(history$metrics$loss, 3)
})

test_that("the optimizer trains on the jax backend from R", {
  skip_if_no_keras()
  skip_if_not(reticulate::py_module_available("jax"), "jax is not installed")
  result <- in_fresh_r(
    function() {
      library(adafactor)
      keras <- reticulate::import("keras")
      np <- reticulate::import("numpy", convert = FALSE)
      x <- np$random$default_rng(3L)$standard_normal(c(64L, 4L))$astype("float32")
      y <- np$sum(x, axis = 1L, keepdims = TRUE)
      model <- keras$Sequential(list(keras$Input(list(4L)), keras$layers$Dense(1L)))
      model$compile(optimizer = optimizer_adafactor(learning_rate = 0.05), loss = "mse")
      history <- model$fit(x, y, epochs = 10L, batch_size = 16L, verbose = 0L)
      list(backend = keras$backend$backend(), loss = unlist(history$history$loss))
    },
    env = c(KERAS_BACKEND = "jax")
  )
  expect_identical(result$backend, "jax")
  expect_lt(result$loss[10], result$loss[1])
})

test_that("name = NULL takes Keras's default name", {
  skip_if_no_keras()
  # Keras numbers the default after the first: adafactor, adafactor_1, ...
  expect_match(optimizer_adafactor(name = NULL)$name, "^adafactor(_[0-9]+)?$")
})
