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
# demo/contenders.R declares the optimizers compared; demo/runs.R measures;
# demo/report.R turns the results into tables, sentences and the figure.

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
compared <- demo_part("contenders.R")
measure <- demo_part("runs.R")
report <- demo_part("report.R")

# ---- 1. Memory --------------------------------------------------------------

memory_part <- function() {
  cat("1. Memory: optimizer state of a T5-base-sized model (built, not trained)\n")
  shapes <- measure$t5_base_shapes()
  made <- compared$makers(training = FALSE)
  measured <- measure$measure_memory(made, shapes)
  invisible(gc())
  cat(sprintf(
    "\n%s parameters, %s of float32 weights\n",
    report$format_count(sum(vapply(shapes, prod, numeric(1)))),
    report$format_mb(measured$weights_mb)
  ))
  optimizers <- names(made)
  print(
    report$memory_table(optimizers, measured$state_mb, measured$weights_mb),
    row.names = FALSE
  )
  name <- compared$names_in(training = FALSE)
  report$say(paste(report$memory_sentences(
    optimizers, measured$state_mb, measured$weights_mb,
    base = name[["ours"]], momentum = name[["momentum"]]
  ), collapse = " "))
  list(
    optimizer = optimizers, state_mb = measured$state_mb,
    weights_mb = measured$weights_mb
  )
}

# ---- 2. Stability -------------------------------------------------------------

stability_part <- function(seeds, epochs) {
  data <- measure$digits(2000, 1)
  valid <- measure$digits(1000, 2)
  cat("\n2. Stability: 3 ReLU layers of 128 units, batches of 16\n")
  cat(sprintf("   %d of the 144 inputs are always zero\n", data$blank))
  made <- compared$makers(training = TRUE)
  pb <- txtProgressBar(max = length(made) * length(seeds) * epochs, style = 3)
  stability <- lapply(made, function(make) {
    lapply(seeds, function(seed) {
      measure$train(make, c(128, 128, 128), data, valid, epochs, 16, seed, pb)
    })
  })
  close(pb)
  report$say(paste(
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
  name <- compared$names_in(training = TRUE)
  said <- report$stability_sentences(
    stability, seeds, name[["keras_adafactor"]], unname(name[c("ours", "momentum")])
  )
  report$say(said$per_contender, said$why)
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
  made <- compared$makers(training = TRUE)
  pb <- txtProgressBar(max = length(made) * epochs, style = 3)
  runs <- lapply(made, function(make) {
    measure$train(make, c(128, 128), data, valid, epochs, 32, 1, pb)
  })
  close(pb)
  print(report$convergence_table(runs), row.names = FALSE, digits = 3)
  # The two Adafactors at the same learning rate.
  same_rate <- unname(compared$names_in(training = TRUE)[c("ours", "keras_adafactor")])
  said <- report$convergence_sentences(runs, same_rate)
  report$say(said$sentences, paste(
    "Not measured here: on sparse gradients (an Embedding on TensorFlow) the",
    "two Adafactors differ by design. keras Adafactor squares each slice",
    "before duplicate rows are summed, which underestimates the second moment",
    "and lengthens its steps; adafactor squares the summed gradient, as the",
    "paper does."
  ))
  list(runs = runs, coincide = if (said$coincide) same_rate)
}

# ---- Main ---------------------------------------------------------------------

main <- function(args = commandArgs(trailingOnly = TRUE)) {
  out_dir <- if (length(args)) args[[1]] else "demo-output"
  dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
  options(width = 100)
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
}

main()
