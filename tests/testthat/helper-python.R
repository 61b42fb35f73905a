# Tests that need Python with keras are skipped where it is missing.
skip_if_no_keras <- function() {
  if (!adafactor_available()) testthat::skip("Python with keras 3 is not available")
}

keras_py <- function() reticulate::import("keras")

# A fresh R process with this package's library paths, for what must be
# checked before Python starts.
in_fresh_r <- function(fun, env = character()) {
  testthat::skip_if_not_installed("callr")
  callr::r(fun, env = c(callr::rcmd_safe_env(), env), libpath = .libPaths())
}
