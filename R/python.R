#' @keywords internal
"_PACKAGE"

# The Python module `adafactor` from inst/python. It is a delay-loaded proxy:
# Python starts, and keras is imported, at the first call that needs it.
adafactor_py <- NULL

.onLoad <- function(libname, pkgname) {
  # Prefer the environment install_adafactor() makes, unless the user chose.
  if (Sys.getenv("RETICULATE_PYTHON") == "" &&
    !reticulate::py_available(initialize = FALSE) &&
    reticulate::virtualenv_exists(default_envname)) {
    reticulate::use_virtualenv(default_envname, required = FALSE)
  }
  adafactor_py <<- reticulate::import_from_path(
    "adafactor",
    path = system.file("python", package = pkgname),
    delay_load = list(on_error = function(e) stop_python_missing(e))
  )
}

adafactor_python <- function() {
  # Starts Python if needed; a missing keras or backend fails here, with
  # advice, rather than deep inside the module proxy.
  tryCatch(
    reticulate::py_run_string("import keras", local = TRUE),
    error = stop_python_missing
  )
  adafactor_py
}

stop_python_missing <- function(e) {
  python <- tryCatch(
    reticulate::py_config()$python,
    error = function(err) "(none found)"
  )
  stop(errorCondition(
    paste0(
      "optimizer_adafactor() needs Python with keras 3 and a backend ",
      "(tensorflow, jax or torch), and could not load them.\n",
      "Python used: ", python, "\n",
      "Python said: ", conditionMessage(e), "\n",
      "Install them with adafactor::install_adafactor(), then restart R; ",
      "or point reticulate at a Python that has them, for example with ",
      "Sys.setenv(RETICULATE_PYTHON = \"/path/to/python\") before the first ",
      "call, or reticulate::use_virtualenv()."
    ),
    class = "adafactor_python_error", call = NULL
  ))
}

#' Is the Python side of adafactor ready?
#'
#' `TRUE` when Python, keras 3 and a backend can be loaded, so that
#' [optimizer_adafactor()] will work. It starts Python if it has not started.
#'
#' @return `TRUE` or `FALSE`.
#' @examples
#' adafactor_available()
#' @export
adafactor_available <- function() {
  tryCatch(
    {
      adafactor_python()$Adafactor
      TRUE
    },
    error = function(e) FALSE
  )
}
