# The Python side: which Python runs, the module `adafactor` from
# inst/python, and Python's warnings and errors as R conditions.

# The Python module, set by .onLoad() to python_module().
adafactor_py <- NULL

# Prefer the environment install_adafactor() makes by default, unless the
# user chose.
prefer_installed_python <- function() {
  default_envname <- formals(install_adafactor)$envname
  user_chose <- Sys.getenv("RETICULATE_PYTHON") != "" ||
    reticulate::py_available(initialize = FALSE)
  if (!user_chose && reticulate::virtualenv_exists(default_envname)) {
    reticulate::use_virtualenv(default_envname, required = FALSE)
  }
}

# A delay-loaded proxy: Python starts, and keras is imported, at the first
# call that needs it.
python_module <- function(pkgname) {
  reticulate::import_from_path(
    "adafactor",
    path = system.file("python", package = pkgname),
    delay_load = list(
      on_load = function() use_r_warnings(),
      on_error = function(e) stop_python_missing(e)
    )
  )
}

# The Python package's warnings go through R's warning(), so that R code can
# catch and silence them: the package warns by calling the function `warn` of
# its module adafactor._warning. Not when Python runs R (rpy2): the package is
# Python's, and so are its users.
use_r_warnings <- function(module = reticulate::import("adafactor._warning"),
                           r_runs_python = python_started_by_r()) {
  if (r_runs_python && reticulate::py_has_attr(module, "warn")) {
    reticulate::py_set_attr(module, "warn", r_warning)
  }
  invisible(NULL)
}

python_started_by_r <- function() {
  started <- get0(
    "was_python_initialized_by_reticulate", asNamespace("reticulate"),
    mode = "function"
  )
  is.null(started) || started()
}

# Signalled once the R call into Python that led to it (reticulate's
# py_call_impl()) has returned: see R/defer.R.
r_warning <- function(message) {
  into_python <- get0("py_call_impl", asNamespace("reticulate"), mode = "function")
  when_returned(
    if (!is.null(into_python)) innermost_frame(into_python),
    warning, warningCondition(message, class = "adafactor_warning", call = NULL)
  )
}

# Importing the module registers its class with Keras. A failure here must
# not fail library(adafactor): it is reported, as reticulate reports hooks.
register_with_keras <- function() {
  tryCatch(adafactor_py$Adafactor, error = function(e) warning(e))
  invisible(NULL)
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

# `python`: the Python reticulate used or tried, named in the message;
# `provides`: whether reticulate (>= 1.41) provides Python itself, from the
# requirements declared with py_require(). Where no Python could be loaded
# at all, that provisioning failed (it needs a network), and the advice is
# what works without it.
stop_python_missing <- function(e, python = python_used(),
                                provides = "py_require" %in%
                                  getNamespaceExports("reticulate")) {
  needs <- paste0(
    "optimizer_adafactor() needs Python (>= ", floors[["python"]],
    ") with keras (>= ", floors[["keras"]], ") and a backend ",
    "(tensorflow, jax or torch)"
  )
  instead <- paste0(
    "install them with adafactor::install_adafactor(), then restart R; ",
    "or point reticulate at a Python that has them, for example with ",
    "Sys.setenv(RETICULATE_PYTHON = \"/path/to/python\") before the first ",
    "call, or reticulate::use_virtualenv()."
  )
  message <- if (python == "(none found)") {
    paste0(
      needs, ", and no Python could be loaded.\n",
      "reticulate said: ", conditionMessage(e), "\n",
      if (provides) {
        paste0(
          "reticulate tried to provide them itself, from the requirements ",
          "declared with reticulate::py_require(), and could not: it ",
          "downloads uv, Python and the packages, which needs a network. Instead, "
        )
      } else {
        "Either "
      },
      instead
    )
  } else {
    paste0(
      needs, ", and could not load them.\n",
      "Python used: ", python, "\n",
      "Python said: ", conditionMessage(e), "\n",
      "Either let reticulate (>= 1.41) provide them: restart R with no ",
      "RETICULATE_PYTHON set and call library(adafactor) first, which ",
      "declares them with reticulate::py_require(); or ", instead
    )
  }
  stop(errorCondition(message, class = "adafactor_python_error", call = NULL))
}

python_used <- function() {
  tryCatch(reticulate::py_config()$python, error = function(err) "(none found)")
}

# A ValueError or TypeError of the Python constructor, or of Keras's base
# class, as an R condition with Python's message alone. The message is read
# from the Python exception itself: reticulate 1.28 fails to format some.
pass_on_python_errors <- function(expr) {
  reticulate::py_last_error(NULL)
  tryCatch(expr, error = function(e) {
    python <- reticulate::py_last_error()
    if (is.null(python) || !python$type %in% c("ValueError", "TypeError")) {
      stop(e)
    }
    argument_error(python$value)
  })
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
