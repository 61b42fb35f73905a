# Helpers for tests that need Python, a fresh R session, or keras3.

# Tests that need Python with keras are skipped where it is missing.
skip_if_no_keras <- function() {
  if (!adafactor_available()) testthat::skip("Python with keras 3 is not available")
}

keras_py <- function() reticulate::import("keras")

# A fresh R process with this package's library paths, for what must be
# checked before Python starts.
in_fresh_r <- function(fun, args = list(), env = character()) {
  testthat::skip_if_not_installed("callr")
  callr::r(fun, args, env = c(callr::rcmd_safe_env(), env), libpath = .libPaths())
}

# A minimal package named keras3 that exports an optimizer_adafactor() of its
# own, installed into a temporary library: only R's search path is under test.
# With `dependent`, also a package that depends on adafactor.
# Its .onLoad, `on_load`, is R code.
stand_in_keras3 <- function(dependent = FALSE, on_load = NULL) {
  library <- tempfile("keras3-lib-")
  dir.create(library)
  keras3 <- "optimizer_adafactor <- function(...) \"keras3's\""
  stand_in_package(library, "keras3", keras3, on_load = on_load)
  if (dependent) {
    stand_in_package(library, "adafactorplus", "plus <- function() 1", "adafactor")
  }
  library
}

stand_in_package <- function(library, name, code, depends = NULL, on_load = NULL) {
  source <- file.path(tempfile("src-"), name)
  dir.create(file.path(source, "R"), recursive = TRUE)
  writeLines(c(
    paste("Package:", name), "Version: 0.0.1", "Title: Stand-in for Tests",
    "Description: Stand-in.", "License: MIT",
    "Authors@R: person('a', 'b', role = c('aut', 'cre'), email = 'a@b.org')",
    if (!is.null(depends)) paste("Depends:", depends)
  ), file.path(source, "DESCRIPTION"))
  writeLines(
    paste0("export(", sub(" <-.*", "", code), ")"), file.path(source, "NAMESPACE")
  )
  if (!is.null(on_load)) {
    code <- c(code, paste(".onLoad <- function(libname, pkgname) {", on_load, "}"))
  }
  writeLines(code, file.path(source, "R", "code.R"))
  testthat::skip_if_not_installed("callr")
  callr::rcmd_safe("INSTALL", c("-l", library, source), fail_on_status = TRUE)
}

# Attach `packages` in order in a fresh R, each with the library() arguments
# in `options[[package]]`, with suppressPackageStartupMessages() when `quiet`
# and R's options `r_options`: what optimizer_adafactor() is then, and what
# adafactor said. A library() call that fails is passed over.
attach_in_order <- function(packages, library, options = list(), quiet = FALSE,
                            r_options = list()) {
  in_fresh_r(function(packages, library, options, quiet, r_options) {
    .libPaths(c(library, .libPaths()))
    base::options(r_options)
    messages <- list()
    attach <- function(p) {
      call <- function() do.call(base::library, c(list(p), options[[p]]))
      try(if (quiet) suppressPackageStartupMessages(call()) else call(), silent = TRUE)
    }
    withCallingHandlers(
      for (p in packages) attach(p),
      message = function(m) {
        if (inherits(m, "adafactor_keras3_message")) {
          messages[[length(messages) + 1L]] <<- m
        }
      }
    )
    list(
      owner = environmentName(environment(optimizer_adafactor)),
      search = grep("^package:(adafactor|keras3)$", search(), value = TRUE),
      positions = match(c("package:adafactor", "package:keras3"), search()),
      attached = if ("package:adafactor" %in% search()) ls("package:adafactor"),
      messages = vapply(messages, conditionMessage, ""),
      classes = lapply(messages, class),
      python_started = reticulate::py_available(initialize = FALSE)
    )
  }, args = list(packages = packages, library = library, options = options,
                 quiet = quiet, r_options = r_options))
}
