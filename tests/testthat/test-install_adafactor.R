# install_adafactor() is checked without a network: the reticulate calls it
# makes are replaced by recorders. Its message is shown only when `quiet` is
# FALSE.
record_install <- function(exists, ..., quiet = TRUE) {
  calls <- list()
  recorder <- function(name) {
    function(...) calls[[length(calls) + 1L]] <<- list(name, list(...))
  }
  fake <- list(
    virtualenv_exists = function(envname) exists,
    virtualenv_create = recorder("create"),
    virtualenv_install = recorder("install")
  )
  ns <- asNamespace("reticulate")
  saved <- mget(names(fake), ns)
  on.exit(for (n in names(saved)) utils::assignInNamespace(n, saved[[n]], ns))
  for (n in names(fake)) utils::assignInNamespace(n, fake[[n]], ns)
  shown <- if (quiet) suppressMessages else identity
  result <- shown(install_adafactor(...))
  list(calls = calls, result = result)
}

test_that("a new environment is created, then keras and tensorflow go in", {
  run <- record_install(exists = FALSE)
  expect_identical(run$calls[[1]][[1]], "create")
  expect_identical(run$calls[[1]][[2]][[1]], "r-adafactor")
  expect_identical(run$calls[[2]][[1]], "install")
  packages <- run$calls[[2]][[2]][[2]]
  expect_identical(packages, run$result)
  expect_true(paste0("keras>=", floors[["keras"]]) %in% packages)
  expect_true(any(grepl("^tensorflow", packages)))
  expect_false(any(grepl("^jax|^torch", packages)))
})

test_that("an existing environment is updated, not created", {
  run <- record_install(exists = TRUE, envname = "elsewhere", backend = "jax")
  expect_length(run$calls, 1L)
  expect_identical(run$calls[[1]][[2]][[1]], "elsewhere")
  expect_true(paste0("jax[cpu]>=", floors[["jax"]]) %in% run$calls[[1]][[2]][[2]])
})

test_that("backends, extra packages and pip options are passed on", {
  run <- record_install(
    exists = TRUE, backend = c("jax", "torch"), extra_packages = "optax",
    pip_options = "--no-cache-dir"
  )
  args <- run$calls[[1]][[2]]
  expect_true(all(c("optax", "--no-cache-dir") %in% unlist(args)))
  expect_true(any(grepl("^jax\\[cpu\\]>=", args[[2]])))
  expect_true(any(grepl("^torch>=", args[[2]])))
  expect_identical(args$pip_options, "--no-cache-dir")
})

test_that("numpy is pinned below 2 only for an old reticulate", {
  expect_true("numpy<2" %in% python_requirements(reticulate_version = "1.28"))
  expect_false("numpy<2" %in% python_requirements(reticulate_version = "1.40"))
  expect_identical(
    python_requirements(sysname = "Darwin")[-1],
    c("numpy<2", paste0("tensorflow>=", floors[["tensorflow"]]))[
      c(utils::packageVersion("reticulate") < "1.35", TRUE)
    ]
  )
})

test_that("an unknown backend is refused", {
  expect_error(install_adafactor(backend = "mxnet"),
               "`backend` must be one or more of .*not \"mxnet\"",
               class = "adafactor_argument_error")
  expect_snapshot(error = TRUE, install_adafactor(backend = c("jax", NA)))
})

test_that("the message says what was installed", {
  # The numpy pin depends on reticulate's version (tested above), not shown.
  expect_snapshot(
    invisible(record_install(exists = FALSE, backend = "torch", quiet = FALSE)),
    transform = function(lines) sub("numpy<2, ", "", lines, fixed = TRUE)
  )
})

test_that("the defaults that the help pages show are values, not internal names", {
  # ?install_adafactor once showed `envname = default_envname`, a name users
  # cannot see. Every default of an exported function evaluates in base R.
  ns <- asNamespace("adafactor")
  for (name in getNamespaceExports(ns)) {
    defaults <- formals(get(name, ns))
    given <- vapply(defaults, function(x) !identical(deparse(x), ""), TRUE)
    for (arg in names(defaults)[given]) {
      value <- tryCatch(eval(defaults[[arg]], baseenv()), error = function(e) e)
      expect_false(inherits(value, "error"),
        label = paste0(name, "(", arg, " = ", deparse(defaults[[arg]]), ")")
      )
    }
  }
  expect_identical(formals(install_adafactor)$envname, "r-adafactor")
})
