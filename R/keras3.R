# keras3 exports an optimizer_adafactor() of its own: keras.optimizers.Adafactor,
# with the parameter-sized buffers this package exists to avoid. A user who
# attached adafactor means this package's, whatever the order of library()
# calls, so when keras3 is attached after adafactor, adafactor moves back in
# front of it on the search path, and says so.
follow_keras3 <- function() {
  setHook(packageEvent("keras3", "attach"), keras3_attached)
}

# When the namespace goes (devtools reloads it, for one), its hook goes too.
unfollow_keras3 <- function() {
  event <- packageEvent("keras3", "attach")
  others <- Filter(function(h) !identical(h, keras3_attached), getHook(event))
  setHook(event, others, "replace")
}

# The user's choice stays: the same exports are attached again (library()'s
# `exclude` and `include.only`), and nothing moves when optimizer_adafactor()
# is not among them, as then keras3's masks nothing of adafactor's.
keras3_attached <- function(...) {
  position <- match(c("package:adafactor", "package:keras3"), search())
  if (anyNA(position) || position[1] < position[2]) {
    return(invisible(FALSE))
  }
  attached <- ls(position[1], all.names = TRUE)
  if (!"optimizer_adafactor" %in% attached) {
    return(invisible(FALSE))
  }
  detach("package:adafactor", character.only = TRUE)
  attachNamespace("adafactor", include.only = attached)
  # library(quietly = TRUE) silences no startup message (R 4.2): a user who
  # asked keras3 to attach quietly means this one too.
  if (!isTRUE(dynGet("quietly", ifnotfound = FALSE))) {
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
