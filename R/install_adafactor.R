#' Install the Python side of adafactor
#'
#' Creates, or updates, a Python virtual environment with keras (>=
#' `r floors[["keras"]]`), a backend and, where this version of reticulate
#' needs it, NumPy below 2. The package
#' looks for the environment `"r-adafactor"` when it is loaded, unless
#' `RETICULATE_PYTHON` says otherwise, so restart R after installing.
#'
#' @param envname Name of, or path to, the virtual environment. The default,
#'   `"r-adafactor"`, is the one the package looks for.
#' @param backend One or more of `"tensorflow"` (the default), `"jax"` and
#'   `"torch"`. Keras uses the backend named by the environment variable
#'   `KERAS_BACKEND`, tensorflow when it is unset: with another backend, set
#'   it, for example `Sys.setenv(KERAS_BACKEND = "jax")`, before the first
#'   call to [optimizer_adafactor()].
#' @param extra_packages Further Python packages to install.
#' @param python_version Passed to [reticulate::virtualenv_create()] when the
#'   environment is new. keras needs Python >= `r floors[["python"]]`.
#' @param ... Passed to [reticulate::virtualenv_install()], for example
#'   `pip_options`.
#'
#' @return The package specifications installed, invisibly.
#' @examples
#' \dontrun{
#' install_adafactor()
#' install_adafactor(backend = c("tensorflow", "jax"))
#' }
#' @export
install_adafactor <- function(envname = "r-adafactor",
                              backend = "tensorflow",
                              extra_packages = NULL,
                              python_version = NULL,
                              ...) {
  packages <- c(python_requirements(backend), extra_packages)
  if (!reticulate::virtualenv_exists(envname)) {
    reticulate::virtualenv_create(envname, version = python_version)
  }
  reticulate::virtualenv_install(envname, packages, ...)
  message(
    "Installed ", paste(packages, collapse = ", "), " into '", envname,
    "'. Restart R to use it."
  )
  invisible(packages)
}
