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
    delay_load = list(
      on_load = function() use_r_warnings(),
      on_error = function(e) stop_python_missing(e)
    )
  )
  # Keras finds the class of a saved model in its registry: import the module
  # as soon as keras is, so that load_model() knows "adafactor>Adafactor".
  on_python_import("keras", register_with_keras)
  follow_keras3()
}

.onUnload <- function(libpath) {
  unfollow_keras3()
}
