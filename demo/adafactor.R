# The main job: what adafactor is for, shown from R in three parts.
#
#  1. Memory: the optimizer state of a T5-base-sized model (223M parameters),
#     built but not trained, for optimizer_adafactor(),
#     keras.optimizers.Adafactor and Adam.
#  2. Stability: a small ReLU network on images with a blank border, a case
#     where keras.optimizers.Adafactor can turn the weights into NaN. The
#     demo counts the non-finite weights after each epoch.
#  3. Convergence: the same kind of network and data, trained with the
#     settings this package recommends, beside keras Adafactor and Adam.
#
# The images are digits drawn on the fly from a 5 x 7 bitmap font, so
# nothing is downloaded. Prints tables, and sentences computed from them,
# and writes adafactor-demo.png.
# Run with `make demo`, or `Rscript demo/adafactor.R [output-dir]`.
#
# demo/runs.R measures; demo/report.R turns the results into tables,
# sentences and the figure.

library(adafactor)

# The demo's other files, each read into an environment of its own.
demo_part <- local({
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  dir <- if (length(file)) dirname(normalizePath(file[[1]])) else "demo"
  function(name) {
    env <- new.env(parent = globalenv())
    sys.source(file.path(dir, name), envir = env)
    env
  }
})
measure <- demo_part("runs.R")
report <- demo_part("report.R")

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args)) args[[1]] else "demo-output"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
options(width = 100)

keras <- reticulate::import("keras")

# The settings recommended for training from scratch: the paper's relative
# step of 1e-2 (Shazeer & Stern, 2018; Keras's default of 1e-3 is ten times
# smaller) and, where a buffer the size of the weights fits, momentum.
with_momentum <- function() {
  optimizer_adafactor(learning_rate = 0.01, beta_1 = 0.9)
}
contenders <- list(
  "adafactor, lr 0.01" = function() optimizer_adafactor(learning_rate = 0.01),
  "adafactor, lr 0.01, beta_1 0.9" = with_momentum,
  "keras Adafactor, lr 0.01" = function() {
    keras$optimizers$Adafactor(learning_rate = 0.01)
  },
  "keras Adam" = function() keras$optimizers$Adam()
)
ours <- names(contenders)[1:2]
keras_adafactor <- names(contenders)[[3]]
same_rate <- c(ours[[1]], keras_adafactor)

# Prints sentences, each as a paragraph.
say <- function(...) {
  cat(paste0(vapply(c(...), report$paragraph, ""), collapse = ""))
}

# ---- 1. Memory --------------------------------------------------------------

memory_part <- function() {
  cat("1. Memory: optimizer state of a T5-base-sized model (built, not trained)\n")
  shapes <- measure$t5_base_shapes()
  memory_contenders <- list(
    "adafactor" = function() optimizer_adafactor(),
    "adafactor, beta_1 0.9" = with_momentum,
    "keras Adafactor" = function() keras$optimizers$Adafactor(),
    "keras Adam" = function() keras$optimizers$Adam()
  )
  measured <- measure$measure_memory(memory_contenders, shapes)
  invisible(gc())
  cat(sprintf(
    "\n%s parameters, %s of float32 weights\n",
    report$format_count(sum(vapply(shapes, prod, numeric(1)))),
    report$format_mb(measured$weights_mb)
  ))
  optimizers <- names(memory_contenders)
  print(
    report$memory_table(optimizers, measured$state_mb, measured$weights_mb),
    row.names = FALSE
  )
  say(paste(report$memory_sentences(
    optimizers, measured$state_mb, measured$weights_mb,
    base = "adafactor", momentum = "adafactor, beta_1 0.9"
  ), collapse = " "))
  list(
    optimizer = names(memory_contenders), state_mb = measured$state_mb,
    weights_mb = measured$weights_mb
  )
}

# ---- 2. Stability -------------------------------------------------------------

stability_part <- function(seeds, epochs) {
  data <- measure$digits(2000, 1)
  valid <- measure$digits(1000, 2)
  cat("\n2. Stability: 3 ReLU layers of 128 units, batches of 16\n")
  cat(sprintf("   %d of the 144 inputs are always zero\n", data$blank))
  pb <- txtProgressBar(max = length(contenders) * length(seeds) * epochs, style = 3)
  stability <- lapply(contenders, function(make) {
    lapply(seeds, function(seed) {
      measure$train(make, c(128, 128, 128), data, valid, epochs, 16, seed, pb)
    })
  })
  close(pb)
  say(paste(
    sprintf("The weights are checked after each of up to %d epochs,", epochs),
    "and a run stops after the first epoch that leaves one NaN or infinite.",
    sprintf(
      "nonfinite: how many of the %s weights are then NaN or infinite;",
      report$format_count(stability[[1]][[1]]$weights)
    ),
    "from_epoch: the epoch after which they first were (NA: never);",
    "epochs: epochs trained; final_loss and val_accuracy: those of the last."
  ))
  print(report$stability_table(stability, seeds), row.names = FALSE, digits = 3)
  said <- report$stability_sentences(stability, seeds, keras_adafactor, ours)
  say(said$per_contender, said$why)
  list(stability = stability, failed = said$failed)
}

# ---- 3. Convergence -----------------------------------------------------------

convergence_part <- function(epochs) {
  data <- measure$digits(6000, 3)
  valid <- measure$digits(2000, 4)
  cat(sprintf(
    "\n3. Convergence: 2 ReLU layers of 128 units, batches of 32, %d epochs\n",
    epochs
  ))
  pb <- txtProgressBar(max = length(contenders) * epochs, style = 3)
  runs <- lapply(contenders, function(make) {
    measure$train(make, c(128, 128), data, valid, epochs, 32, 1, pb)
  })
  close(pb)
  print(report$convergence_table(runs), row.names = FALSE, digits = 3)
  said <- report$convergence_sentences(runs, same_rate)
  say(said$sentences, paste(
    "Not measured here: on sparse gradients (an Embedding on TensorFlow) the",
    "two Adafactors differ by design. keras Adafactor squares each slice",
    "before duplicate rows are summed, which underestimates the second moment",
    "and lengthens its steps; adafactor squares the summed gradient, as the",
    "paper does."
  ))
  list(runs = runs, coincide = if (said$coincide) same_rate)
}

# ---- Main ---------------------------------------------------------------------

seeds <- 1:3
stable_epochs <- 3
memory <- memory_part()
stable <- stability_part(seeds, stable_epochs)
converged <- convergence_part(epochs = 10)
file <- report$plot_demo(
  file.path(out_dir, "adafactor-demo.png"), memory, stable$stability,
  stable_epochs = stable_epochs, failed = stable$failed, seeds = seeds,
  runs = converged$runs, coincide = converged$coincide
)
cat("Plot written to", file, "\n")
