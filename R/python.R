#' @keywords internal
"_PACKAGE"

# The Python module `adafactor` from inst/python. It is a delay-loaded proxy:
# Python starts, and keras is imported, at the first call that needs it.
adafactor_py <- NULL

.onLoad <- function(libname, pkgname) {
  # Prefer the environment install_adafactor() makes, unless the user chose.
  user_chose <- Sys.getenv("RETICULATE_PYTHON") != "" ||
    reticulate::py_available(initialize = FALSE)
  if (!user_chose && reticulate::virtualenv_exists(default_envname)) {
    reticulate::use_virtualenv(default_envname, required = FALSE)
  }
  require_python_packages()
  adafactor_py <<- reticulate::import_from_path(
    "adafactor",
    path = system.file("python", package = pkgname),
    delay_load = list(on_error = function(e) stop_python_missing(e))
  )
  # Keras finds the class of a saved model in its registry: import the module
  # as soon as keras is, so that load_model() knows "adafactor>Adafactor".
  on_python_import("keras", register_with_keras)
  follow_keras3()
}

# Importing the module registers its class with Keras. A failure here must
# not fail library(adafactor): it is reported, as reticulate reports hooks.
register_with_keras <- function() {
  tryCatch(adafactor_py$Adafactor, error = function(e) warning(e))
  invisible(NULL)
}

# reticulate >= 1.41 provisions Python from the requirements packages
# declare: keras 3, and tensorflow unless a backend is already required.
require_python_packages <- function(
    py_require = get0("py_require", asNamespace("reticulate"))) {
  if (is.null(py_require)) {
    return(invisible(NULL))
  }
  required <- py_require()$packages
  names <- tolower(sub("^([A-Za-z0-9_.-]+).*$", "\\1", required))
  has_backend <- any(names %in% c("tensorflow", "tensorflow-cpu", "jax", "torch"))
  packages <- c("keras>=3", if (!has_backend) "tensorflow")
  py_require(packages)
  invisible(packages)
}

# Run `hook` when Python imports `module`, or now if it has. reticulate's
# py_register_load_hook() is exported from 1.42; before that it is internal
# and starts Python to look, so it is called only once Python is running.
on_python_import <- function(
    module, hook,
    register = get("py_register_load_hook", asNamespace("reticulate")),
    exported = "py_register_load_hook" %in% getNamespaceExports("reticulate"),
    python_running = reticulate::py_available(initialize = FALSE)) {
  if (exported || python_running) {
    register(module, hook)
  } else {
    # What py_register_load_hook() does when the module is not yet loaded.
    setHook(paste("reticulate", module, "load", sep = "::"), hook)
  }
  invisible(NULL)
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
      "Either let reticulate (>= 1.41) provide them: restart R with no ",
      "RETICULATE_PYTHON set and call library(adafactor) first, which ",
      "declares them with reticulate::py_require(); ",
      "or install them with adafactor::install_adafactor(), then restart R; ",
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
