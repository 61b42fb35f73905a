# The optimizers the demo compares, declared once for all its parts. Plain R:
# Python starts only when an optimizer is made, so tests/testthat/test-demo.R
# can read the names.
#
# Each contender is keyed by its role in the narrative, and named by its
# optimizer and the options it is given. `rate` is its learning rate in
# training (NULL: its own default); the memory part leaves it out, since the
# rate does not change what an optimizer keeps.

contender <- function(optimizer, make, rate = NULL, ...) {
  list(optimizer = optimizer, make = make, rate = rate, options = list(...))
}

keras_optimizers <- function() reticulate::import("keras")$optimizers

# The settings recommended for training from scratch: the paper's relative
# step of 1e-2 (Shazeer & Stern, 2018; Keras's default of 1e-3 is ten times
# smaller) and, where a buffer the size of the weights fits, momentum.
contenders <- list(
  ours = contender("adafactor", adafactor::optimizer_adafactor, rate = 0.01),
  momentum = contender(
    "adafactor", adafactor::optimizer_adafactor, rate = 0.01, beta_1 = 0.9
  ),
  keras_adafactor = contender(
    "keras Adafactor", function(...) keras_optimizers()$Adafactor(...), rate = 0.01
  ),
  adam = contender("keras Adam", function(...) keras_optimizers()$Adam(...))
)

# What a contender is given: in training, its learning rate too.
options_in <- function(contender, training) {
  rate <- if (training && !is.null(contender$rate)) list(learning_rate = contender$rate)
  c(rate, contender$options)
}

# "adafactor, lr 0.01, beta_1 0.9"
contender_name <- function(contender, training) {
  options <- options_in(contender, training)
  keys <- sub("^learning_rate$", "lr", names(options))
  paste(c(contender$optimizer, paste(keys, unlist(options))), collapse = ", ")
}

# The contenders' names in a part, keyed by role.
names_in <- function(training) {
  vapply(contenders, contender_name, character(1), training = training)
}

# A function per contender that makes a fresh optimizer, named as in the part.
makers <- function(training) {
  made <- lapply(contenders, function(contender) {
    options <- options_in(contender, training)
    function() do.call(contender$make, options)
  })
  stats::setNames(made, names_in(training))
}
