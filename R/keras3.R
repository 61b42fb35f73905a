# keras3 exports an optimizer_adafactor() of its own: keras.optimizers.Adafactor,
# with the parameter-sized buffers this package exists to avoid. A user who
# attached adafactor means this package's, whatever the order of library()
# calls, so when keras3 is attached after adafactor, adafactor moves back in
# front of it on the search path, and says so.
#
# keras3's .onLoad also removes every backend requirement declared with
# reticulate::py_require(), versions included, and declares its own without
# one: once keras3 is loaded, adafactor declares its floors again.
follow_keras3 <- function() {
  setHook(packageEvent("keras3", "attach"), keras3_attached)
  setHook(packageEvent("keras3", "onLoad"), keras3_loaded)
}

# When the namespace goes (devtools reloads it, for one), its hooks go too.
unfollow_keras3 <- function() {
  hooks <- list(attach = keras3_attached, onLoad = keras3_loaded)
  for (name in names(hooks)) {
    event <- packageEvent("keras3", name)
    ours <- hooks[[name]]
    others <- Filter(function(h) !identical(h, ours), getHook(event))
    setHook(event, others, "replace")
  }
}

keras3_loaded <- function(...) {
  require_python_packages()
}

# Called when keras3 is attached, inside library(keras3). Under a
# conflicts.policy that makes conflicts errors, library() itself decides
# (it refuses keras3, or lets it mask what the policy allows): nothing moves.
keras3_attached <- function(...) {
  if (conflicts_are_errors()) {
    return(invisible(FALSE))
  }
  frame <- innermost_frame(base::library)
  quietly <- !is.null(frame) && isTRUE(get0("quietly", frame, inherits = FALSE))
  move_ahead_of_keras3(quietly)
}

conflicts_are_errors <- function(policy = getOption("conflicts.policy")) {
  identical(policy, "strict") || (is.list(policy) && isTRUE(policy$error))
}

# adafactor goes just ahead of keras3 when keras3's optimizer_adafactor()
# would mask adafactor's. The user's choice stays: the functions attached are
# attached again (library()'s `exclude` and `include.only`), and nothing moves
# when either optimizer_adafactor() is not attached. `quietly`: that of
# library(keras3), which in R (4.2) silences no startup message itself.
move_ahead_of_keras3 <- function(quietly = FALSE) {
  position <- match(c("package:adafactor", "package:keras3"), search())
  if (anyNA(position) || position[1] < position[2]) {
    return(invisible(FALSE))
  }
  attached <- ls(position[1], all.names = TRUE)
  masked <- "optimizer_adafactor" %in% attached &&
    exists("optimizer_adafactor", where = position[2], inherits = FALSE)
  if (!masked) {
    return(invisible(FALSE))
  }
  # Also when an attached package depends on adafactor: it is back at once.
  detach(pos = position[1], force = TRUE)
  attachNamespace("adafactor", pos = position[2], include.only = attached)
  if (!quietly) {
    message(keras3_message())
  }
  invisible(TRUE)
}

# A package startup message, silenced as they are, with a class of its own.
keras3_message <- function() {
  structure(
    class = c(
      "adafactor_keras3_message", "packageStartupMessage", "simpleMessage",
      "message", "condition"
    ),
    list(message = paste0(
      "adafactor: keras3 was attached after adafactor, and its own ",
      "optimizer_adafactor() (keras.optimizers.Adafactor) would have masked ",
      "this package's. adafactor is now ahead of keras3 on the search path: ",
      "optimizer_adafactor() is adafactor's; keras3's is ",
      "keras3::optimizer_adafactor().\n"
    ), call = NULL)
  )
}
