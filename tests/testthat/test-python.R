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
  expect_match(result$message, "needs Python with keras 3 and a backend")
  expect_match(result$message, "install_adafactor()", fixed = TRUE)
  expect_match(result$message, "RETICULATE_PYTHON", fixed = TRUE)
  expect_match(result$message, "py_require()", fixed = TRUE)
  expect_match(result$message, bare, fixed = TRUE)
  expect_true("adafactor_python_error" %in% result$class)
  expect_false(result$available)
})

test_that("with py_require(), keras 3 and a backend are declared", {
  calls <- list()
  fake_require <- function(required) {
    function(packages) {
      if (missing(packages)) {
        return(list(packages = required))
      }
      calls[[length(calls) + 1L]] <<- packages
    }
  }
  expect_identical(
    require_python_packages(fake_require("numpy")), c("keras>=3", "tensorflow")
  )
  expect_identical(calls[[1]], c("keras>=3", "tensorflow"))
  for (backend in c("jax[cpu]", "torch>=2.1", "tensorflow-cpu", "TensorFlow")) {
    expect_identical(
      require_python_packages(fake_require(c("numpy", backend))), "keras>=3"
    )
  }
  # Before reticulate 1.41 there is no py_require(): nothing is declared.
  expect_null(require_python_packages(NULL))
  if (utils::packageVersion("reticulate") < "1.41") {
    expect_null(require_python_packages())
  }
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
    # An R function cannot be saved: its current value is, with a warning.
    optimizer <- optimizer_adafactor(learning_rate = function() 0.02)
    model$compile(optimizer = optimizer, loss = "mse")
    model$fit(x, np$zeros(c(8L, 2L)), epochs = 2L, verbose = 0L)
    record <- reticulate::py_run_string(paste(
      "import warnings",
      "def record(f, *args):",
      "    with warnings.catch_warnings(record=True) as caught:",
      "        warnings.simplefilter('always')",
      "        f(*args)",
      "    return [str(w.message) for w in caught]",
      sep = "\n"
    ))$record
    list(
      messages = unlist(record(model$save, path)),
      iterations = as.integer(model$optimizer$iterations$numpy())
    )
  }, args = list(path = path))
  expect_match(saved$messages, "current value, 0.02, is saved instead", all = FALSE)

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
