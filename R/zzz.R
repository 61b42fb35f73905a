.onLoad <- function(libname, pkgname) {
  prefer_installed_python()
  require_python_packages()
  adafactor_py <<- python_module(pkgname)
  # Keras finds the class of a saved model in its registry: import the module
  # as soon as keras is, so that load_model() knows "adafactor>Adafactor".
  on_python_import("keras", register_with_keras)
  follow_keras3()
}

.onUnload <- function(libpath) {
  unfollow_keras3()
}
