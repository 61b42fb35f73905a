# The Python requirements, in one place: install_adafactor() installs them,
# library(adafactor) declares them with reticulate::py_require(), and the
# tests check that DESCRIPTION and pyproject.toml state the same floors.

# The least versions the code needs and the test suite runs on.
floors <- c(
  python = "3.11", keras = "3.15.1",
  tensorflow = "2.21", jax = "0.7.1", torch = "2.13"
)

backends <- c("tensorflow", "jax", "torch")

# The pip requirement of each backend, named as keras3 names it.
backend_requirements <- function(backend, sysname = Sys.info()[["sysname"]]) {
  linux <- sysname == "Linux"
  packages <- c(
    tensorflow = if (linux) "tensorflow-cpu" else "tensorflow",
    jax = if (linux) "jax[cpu]" else "jax",
    torch = "torch"
  )
  unname(paste0(packages[backend], ">=", floors[backend]))
}

# The pip requirement specifications for the chosen backends.
python_requirements <- function(backend = "tensorflow",
                                reticulate_version =
                                  utils::packageVersion("reticulate"),
                                sysname = Sys.info()[["sysname"]]) {
  valid <- is.character(backend) && length(backend) > 0L &&
    !anyNA(backend) && all(backend %in% backends)
  if (!valid) {
    argument_error(sprintf(
      "`backend` must be one or more of %s, not %s.",
      paste0("\"", backends, "\"", collapse = ", "), describe(backend)
    ))
  }
  c(
    paste0("keras>=", floors[["keras"]]),
    # reticulate before 1.35 cannot load NumPy 2.
    if (reticulate_version < "1.35") "numpy<2",
    backend_requirements(unique(backend), sysname)
  )
}

# reticulate >= 1.41 provisions Python from the requirements packages
# declare. Declared here: keras's floor, the floor of each backend declared
# already (keras3 declares keras and its backend without versions; uv keeps
# every specifier of a package), or the backend KERAS_BACKEND names where
# none is; and the Python floor. Nothing once Python runs, when reticulate
# can no longer change it.
require_python_packages <- function(
    py_require = get0("py_require", asNamespace("reticulate")),
    python_running = reticulate::py_available(initialize = FALSE),
    backend = Sys.getenv("KERAS_BACKEND", "tensorflow"),
    sysname = Sys.info()[["sysname"]]) {
  if (is.null(py_require) || python_running) {
    return(invisible(NULL))
  }
  required <- py_require()$packages
  names <- unique(tolower(sub("^([A-Za-z0-9_.-]+).*$", "\\1", required)))
  declared <- names[names %in% c(backends, "tensorflow-cpu")]
  backend <- sub("-(cpu|gpu)$", "", backend) # as keras3 reads it
  packages <- c(
    paste0("keras>=", floors[["keras"]]),
    if (length(declared) > 0L) {
      paste0(declared, ">=", floors[sub("-cpu$", "", declared)])
    } else if (backend %in% backends) {
      backend_requirements(backend, sysname)
    }
  )
  py_require(packages, python_version = paste0(">=", floors[["python"]]))
  invisible(packages)
}
