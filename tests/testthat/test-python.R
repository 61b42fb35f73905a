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
  expect_match(result$message, bare, fixed = TRUE)
  expect_true("adafactor_python_error" %in% result$class)
  expect_false(result$available)
})
