# A stand-in for reticulate's py_require(): `required` is what is declared
# already; the calls it records are in `environment(fake)$calls`.
fake_require <- function(required = character()) {
  calls <- list()
  function(packages = NULL, python_version = NULL) {
    if (missing(packages) && missing(python_version)) {
      return(list(packages = required))
    }
    calls[[length(calls) + 1L]] <<- list(packages, python_version)
    invisible()
  }
}

declared <- function(required = character(), ...) {
  fake <- fake_require(required)
  require_python_packages(fake, ...)
  environment(fake)$calls
}

python_floor <- paste0(">=", floors[["python"]])
keras_floor <- paste0("keras>=", floors[["keras"]])

test_that("py_require() gets keras and the backend KERAS_BACKEND names", {
  expected <- list(
    tensorflow = paste0("tensorflow-cpu>=", floors[["tensorflow"]]),
    jax = paste0("jax[cpu]>=", floors[["jax"]]),
    torch = paste0("torch>=", floors[["torch"]])
  )
  for (backend in names(expected)) {
    calls <- declared(backend = backend, python_running = FALSE, sysname = "Linux")
    expect_identical(
      calls, list(list(c(keras_floor, expected[[backend]]), python_floor))
    )
  }
  calls <- declared(backend = "tensorflow", python_running = FALSE, sysname = "Darwin")
  expect_identical(calls[[1]][[1]][2], paste0("tensorflow>=", floors[["tensorflow"]]))
  # A backend this package does not know: keras only.
  calls <- declared(backend = "openvino", python_running = FALSE)
  expect_identical(calls[[1]][[1]], keras_floor)
})

test_that("py_require() gets the floors of all declared, not once Python runs", {
  # keras3 declares keras and a backend without versions: the floors are
  # declared beside them, each under the name declared.
  cases <- list(
    "jax[cpu]" = paste0("jax>=", floors[["jax"]]),
    "torch>=2.1" = paste0("torch>=", floors[["torch"]]),
    "tensorflow-cpu" = paste0("tensorflow-cpu>=", floors[["tensorflow"]]),
    "TensorFlow" = paste0("tensorflow>=", floors[["tensorflow"]])
  )
  for (backend in names(cases)) {
    required <- c("numpy", "keras", backend)
    calls <- declared(required, backend = "jax", python_running = FALSE)
    expect_identical(calls, list(list(c(keras_floor, cases[[backend]]), python_floor)))
  }
  calls <- declared(c("keras", "tensorflow-cpu", "jax[cpu]"), python_running = FALSE)
  expect_identical(calls[[1]][[1]], c(
    keras_floor, paste0("tensorflow-cpu>=", floors[["tensorflow"]]),
    paste0("jax>=", floors[["jax"]])
  ))
  expect_length(declared(python_running = TRUE), 0L)
  # Before reticulate 1.41 there is no py_require(): nothing is declared.
  expect_null(require_python_packages(NULL, python_running = FALSE))
})

test_that("install_adafactor() installs the floors", {
  expect_identical(
    python_requirements(c("jax", "torch"), reticulate_version = "1.40"),
    c(keras_floor, paste0("jax[cpu]>=", floors[["jax"]]),
      paste0("torch>=", floors[["torch"]]))
  )
})

# Read from the source tree: pyproject.toml is not in the built package.
source_file <- function(name) {
  path <- testthat::test_path("..", "..", name)
  testthat::skip_if_not(file.exists(path), paste(name, "is not here"))
  path
}

test_that("DESCRIPTION states the floors", {
  description <- system.file("DESCRIPTION", package = "adafactor")
  stated <- gsub("\\s+", " ", read.dcf(description, "SystemRequirements"))
  expect_match(
    stated,
    sprintf("Python (>= %s) with keras (>= %s)", floors[["python"]], floors[["keras"]]),
    fixed = TRUE
  )
  for (name in backends) {
    expect_match(stated, sprintf("%s (>= %s)", name, floors[[name]]), fixed = TRUE)
  }
})

test_that("pyproject.toml states the floors", {
  pyproject <- readLines(source_file("pyproject.toml"))
  expect_true(sprintf("requires-python = \"%s\"", python_floor) %in% pyproject)
  for (name in c("keras", "tensorflow", "jax", "torch")) {
    expect_match(
      pyproject, sprintf("\"%s>=%s[,\"]", name, floors[[name]]),
      all = FALSE, label = name
    )
  }
})

test_that("R CMD build leaves out demo output and coverage data", {
  source <- dirname(source_file(".Rbuildignore"))
  # R CMD build removes an ignored directory with what is in it.
  files <- c("demo-output", ".coverage", ".coverage.host.1234.XkqZ")
  kept <- c("DESCRIPTION", "R/python.R", "inst/python/adafactor/optimizer.py",
            "tests/testthat/test-requirements.R", "man/optimizer_adafactor.Rd")
  expect_identical(
    tools:::inRbuildignore(c(files, kept), source),
    rep(c(TRUE, FALSE), c(length(files), length(kept)))
  )
})
