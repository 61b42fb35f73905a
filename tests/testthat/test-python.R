test_that("library(adafactor) does not start Python", {
  started <- in_fresh_r(function() {
    library(adafactor)
    reticulate::py_available(initialize = FALSE)
  })
  expect_false(started)
})

test_that("the Python module comes from the package's inst/python", {
  skip_if_no_keras()
  module_file <- reticulate::py_get_attr(adafactor_py, "__file__")
  expect_identical(
    normalizePath(dirname(dirname(reticulate::py_to_r(module_file)))),
    normalizePath(system.file("python", package = "adafactor"))
  )
})

test_that("without keras the first call says what to install", {
  python <- Sys.which("python3")
  skip_if(python == "", "no python3 to make a bare environment with")
  bare <- tempfile("bare-venv-")
  status <- system2(python, c("-m", "venv", "--without-pip", bare))
  skip_if(status != 0, "could not create a bare virtual environment")
  result <- in_fresh_r(
    function() {
      library(adafactor)
      error <- tryCatch(optimizer_adafactor(), error = identity)
      list(message = conditionMessage(error), class = class(error),
           available = adafactor_available())
    },
    env = c(RETICULATE_PYTHON = file.path(bare, "bin", "python"))
  )
  expect_match(result$message, sprintf(
    "needs Python (>= %s) with keras (>= %s) and a backend",
    floors[["python"]], floors[["keras"]]
  ), fixed = TRUE)
  expect_match(result$message, "install_adafactor()", fixed = TRUE)
  expect_match(result$message, "RETICULATE_PYTHON", fixed = TRUE)
  expect_match(result$message, "py_require()", fixed = TRUE)
  expect_match(result$message, bare, fixed = TRUE)
  expect_true("adafactor_python_error" %in% result$class)
  expect_false(result$available)
})

test_that("the error without keras reads well", {
  error <- simpleError("No module named 'keras'")
  expect_snapshot(error = TRUE, stop_python_missing(error, python = "/usr/bin/python3"))
})

test_that("without any Python, the error says what works instead", {
  error <- simpleError("Installation of Python not found, Python bindings not loaded.")
  # reticulate >= 1.41 tried to provide Python itself, and could not.
  none <- "(none found)"
  expect_snapshot(error = TRUE, stop_python_missing(error, none, provides = TRUE))
  expect_snapshot(error = TRUE, stop_python_missing(error, none, provides = FALSE))
})

test_that("the class is registered when keras is imported", {
  registered <- NULL
  register <- function(module, hook) registered <<- list(module, hook)
  hook <- function() "imported"
  # reticulate >= 1.42, or Python running: reticulate's own registration.
  on_python_import("keras", hook, register, exported = TRUE, python_running = FALSE)
  expect_identical(registered, list("keras", hook))
  registered <- NULL
  on_python_import("keras", hook, register, exported = FALSE, python_running = TRUE)
  expect_identical(registered, list("keras", hook))
  # Older reticulate before Python starts: the hook reticulate runs on import.
  registered <- NULL
  name <- "reticulate::not_a_module::load"
  on_python_import("not_a_module", hook, register,
    exported = FALSE, python_running = FALSE
  )
  on.exit(setHook(name, NULL, "replace"))
  expect_null(registered)
  expect_identical(getHook(name), list(hook))
})

test_that("a saved model loads in a fresh session and trains on", {
  skip_if_no_keras()
  path <- tempfile(fileext = ".keras")
  saved <- in_fresh_r(function(path) {
    library(adafactor)
    keras <- reticulate::import("keras")
    np <- reticulate::import("numpy", convert = FALSE)
    x <- np$ones(c(8L, 3L), dtype = "float32")
    model <- keras$Sequential(list(keras$Input(list(3L)), keras$layers$Dense(2L)))
    # An R function cannot be saved: its current value is, with an R warning.
    optimizer <- optimizer_adafactor(learning_rate = function() 0.02)
    model$compile(optimizer = optimizer, loss = "mse")
    model$fit(x, np$zeros(c(8L, 2L)), epochs = 2L, verbose = 0L)
    messages <- character()
    withCallingHandlers(model$save(path), adafactor_warning = function(w) {
      messages <<- c(messages, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
    # A handler that exits gets the warning once the save is done: the file
    # that is loaded below is this one.
    caught <- tryCatch(model$save(path), warning = function(w) class(w)[[1]])
    list(
      messages = messages, caught = caught,
      iterations = as.integer(model$optimizer$iterations$numpy())
    )
  }, args = list(path = path))
  expect_match(saved$messages, "current value, 0.02, is saved instead", all = FALSE)
  expect_identical(saved$caught, "adafactor_warning")

  loaded <- in_fresh_r(function(path) {
    library(adafactor)
    before <- reticulate::py_available(initialize = FALSE)
    keras <- reticulate::import("keras")
    model <- keras$models$load_model(path)
    iterations <- as.integer(model$optimizer$iterations$numpy())
    np <- reticulate::import("numpy", convert = FALSE)
    model$fit(np$ones(c(8L, 3L), dtype = "float32"), np$zeros(c(8L, 2L)),
      epochs = 1L, verbose = 0L
    )
    list(
      before = before, class = class(model$optimizer)[1],
      rate = model$optimizer$get_config()$learning_rate,
      iterations = iterations,
      after = as.integer(model$optimizer$iterations$numpy())
    )
  }, args = list(path = path))
  expect_false(loaded$before)
  expect_identical(loaded$class, "adafactor.optimizer.Adafactor")
  expect_equal(loaded$rate, 0.02, tolerance = 1e-6)
  expect_identical(loaded$iterations, saved$iterations)
  expect_identical(loaded$after, saved$iterations + 1L)

  # keras already imported when adafactor is attached: registered at once.
  late <- in_fresh_r(function(path) {
    keras <- reticulate::import("keras")
    library(adafactor)
    class(keras$models$load_model(path)$optimizer)[1]
  }, args = list(path = path))
  expect_identical(late, "adafactor.optimizer.Adafactor")
})

test_that("the module's warnings become R warnings", {
  skip_if_no_keras()
  dir <- tempfile("module-")
  dir.create(dir)
  writeLines(c(
    "import warnings", "def warn(message):", "    warnings.warn(message)",
    "saved = []",
    "def save():", "    warn('saved instead')", "    saved.append(True)"
  ), file.path(dir, "warns_in_python.py"))
  module <- reticulate::import_from_path("warns_in_python", dir)
  use_r_warnings(module, r_runs_python = FALSE) # Python runs R: Python's
  expect_no_warning(module$save())
  use_r_warnings(module)
  expect_warning(module$save(), "^saved instead$", class = "adafactor_warning")
  expect_no_warning(suppressWarnings(module$save()))
  expect_length(module$saved, 3L)
  # A handler that exits, or a warning made an error, takes effect once
  # Python's call has returned, never in the middle of it.
  expect_identical(tryCatch(module$save(), warning = function(w) "caught"), "caught")
  withr::local_options(warn = 2)
  expect_error(module$save(), "saved instead")
  expect_length(module$saved, 5L)
})

test_that("Python's refusals arrive as R conditions with Python's message", {
  skip_if_no_keras()
  cases <- list(
    list(epsilon_1 = -1), list(beta_1 = 1), list(decay_offset = 1.5),
    list(name = "my adafactor"), list(epsilon_2 = NULL),
    list(learning_rate = Inf), list(momentum_dtype = "int8")
  )
  for (args in cases) {
    python <- tryCatch(
      do.call(adafactor_py$Adafactor, args),
      error = conditionMessage
    )
    error <- tryCatch(do.call(optimizer_adafactor, args), error = identity)
    expect_s3_class(error, "adafactor_argument_error")
    expect_match(conditionMessage(error), "^Argument `.*` must be .*Received: ")
    expect_true(grepl(conditionMessage(error), python, fixed = TRUE))
    expect_false(grepl("Traceback|py_last_error", conditionMessage(error)))
  }
  expect_snapshot(error = TRUE, optimizer_adafactor(epsilon_1 = -1))
})

test_that("Keras's own refusals arrive as argument errors too", {
  skip_if_no_keras()
  error <- tryCatch(
    optimizer_adafactor(clipnorm = 1, global_clipnorm = 1),
    error = identity
  )
  expect_s3_class(error, "adafactor_argument_error")
  expect_match(conditionMessage(error), "^Only one of `clipnorm`")
  expect_false(grepl("Error|Traceback|py_last_error|\n", conditionMessage(error)))
  expect_snapshot(error = TRUE, optimizer_adafactor(clipnorm = 1, global_clipnorm = 1))
})

test_that("a long invalid value gives a short error", {
  skip_if_no_keras()
  error <- tryCatch(
    optimizer_adafactor(name = paste0(strrep("a", 1000), " ")),
    error = identity
  )
  expect_s3_class(error, "adafactor_argument_error")
  expect_match(conditionMessage(error), "^Argument `name` must be")
  expect_match(conditionMessage(error), "...", fixed = TRUE)
  expect_lt(nchar(conditionMessage(error)), 500)
})

test_that("saving a learning-rate function warns in R", {
  skip_if_no_keras()
  keras <- keras_py()
  model <- keras$Sequential(list(keras$Input(list(3L)), keras$layers$Dense(2L)))
  model$compile(optimizer = optimizer_adafactor(learning_rate = function() 0.02))
  model$optimizer$build(model$trainable_variables)
  path <- tempfile(fileext = ".keras")
  expect_snapshot(model$save(path))
})
