# The main job: what adafactor is for, shown from R in three parts.
#
#  1. Memory: the optimizer state of a T5-base-sized model (223M parameters),
#     built but not trained, for optimizer_adafactor(),
#     keras.optimizers.Adafactor and Adam.
#  2. Stability: a small ReLU network on images with a blank border, where
#     keras.optimizers.Adafactor turns the weights into NaN.
#  3. Convergence: the same kind of network and data, trained with the
#     settings this package recommends, beside keras Adafactor and Adam.
#
# The images are digits drawn on the fly from a 5 x 7 bitmap font, so
# nothing is downloaded. Prints tables and writes adafactor-demo.png.
# Run with `make demo`, or `Rscript demo/adafactor.R [output-dir]`.

library(adafactor)

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args)) args[[1]] else "demo-output"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
options(width = 100)

keras <- reticulate::import("keras")
np <- reticulate::import("numpy", convert = FALSE)

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

# ---- 1. Memory --------------------------------------------------------------

# The weight shapes of T5-base (Raffel et al., 2020): a shared embedding,
# 12 encoder blocks (self-attention, feed-forward) and 12 decoder blocks
# (self-attention, cross-attention, feed-forward), relative position biases
# and layer-norm scales.
t5_base_shapes <- function(d = 768L, ff = 3072L, vocab = 32128L, layers = 12L) {
  attention <- rep(list(c(d, d)), 4)
  feed_forward <- list(c(d, ff), c(ff, d))
  encoder <- c(attention, feed_forward, rep(list(d), 2))
  decoder <- c(attention, attention, feed_forward, rep(list(d), 3))
  c(
    list(c(vocab, d)),
    do.call(c, rep(list(encoder), layers)),
    do.call(c, rep(list(decoder), layers)),
    list(c(32L, 12L), c(32L, 12L), d, d)
  )
}

bytes_of <- function(variables) {
  size <- c(float32 = 4, float16 = 2, bfloat16 = 2, int64 = 8, int32 = 4)
  as_list <- reticulate::import_builtins()$list
  sum(vapply(variables, function(v) {
    prod(unlist(as_list(v$shape))) * size[[v$dtype]]
  }, numeric(1)))
}

cat("1. Memory: optimizer state of a T5-base-sized model (built, not trained)\n")
shapes <- t5_base_shapes()
weights <- lapply(seq_along(shapes), function(i) {
  keras$Variable(
    initializer = "zeros", shape = as.list(shapes[[i]]), dtype = "float32",
    name = sprintf("w%d", i)
  )
})
memory_contenders <- list(
  "adafactor" = function() optimizer_adafactor(),
  "adafactor, beta_1 0.9" = with_momentum,
  "keras Adafactor" = function() keras$optimizers$Adafactor(),
  "keras Adam" = function() keras$optimizers$Adam()
)
pb <- txtProgressBar(max = length(memory_contenders), style = 3)
memory <- data.frame(
  optimizer = names(memory_contenders),
  state_mb = vapply(seq_along(memory_contenders), function(i) {
    optimizer <- memory_contenders[[i]]()
    optimizer$build(weights)
    setTxtProgressBar(pb, i)
    mb <- bytes_of(optimizer$variables) / 2^20
    rm(optimizer)
    gc()
    mb
  }, numeric(1))
)
close(pb)
weights_mb <- bytes_of(weights) / 2^20
memory$x_weights <- round(memory$state_mb / weights_mb, 4)
memory$state_mb <- round(memory$state_mb, 1)
cat(sprintf(
  "\n%s parameters, %.0f MB of float32 weights\n",
  format(sum(vapply(shapes, prod, numeric(1))), big.mark = ","), weights_mb
))
print(memory, row.names = FALSE)
rm(weights)
invisible(gc())

# ---- Data: digits drawn on a 12 x 12 canvas ---------------------------------

font <- c(
  "01110100011001110101110011000101110", "00100011000010000100001000010001110",
  "01110100010000100010001000100011111", "11111000100010000010000011000101110",
  "00010001100101010010111110001000010", "11111100001111000001000011000101110",
  "00110010001000011110100011000101110", "11111000010001000100010000100001000",
  "01110100011000101110100011000101110", "01110100011000101111000010001001100"
)
glyphs <- lapply(font, function(bits) {
  matrix(as.numeric(strsplit(bits, "")[[1]]), 7, 5, byrow = TRUE)
})

# Each digit at a random place, with random ink and 15% of its strokes
# missing. The outer ring of pixels is always blank, as in scanned digits:
# those inputs are always zero.
digits <- function(n, seed, size = 12L) {
  set.seed(seed)
  labels <- sample(0:9, n, replace = TRUE)
  x <- array(0, c(n, size, size))
  for (i in seq_len(n)) {
    ink <- glyphs[[labels[i] + 1]] * runif(35, 0.5, 1) * (runif(35) > 0.15)
    r <- sample(2:(size - 7), 1)
    c <- sample(2:(size - 5), 1)
    x[i, r:(r + 6), c:(c + 4)] <- ink
  }
  list(
    x = np$array(matrix(x, n), dtype = "float32"),
    y = np$array(labels, dtype = "int32"),
    blank = sum(apply(x, c(2, 3), max) == 0)
  )
}

mlp <- function(hidden) {
  layers <- lapply(hidden, function(units) {
    keras$layers$Dense(as.integer(units), activation = "relu")
  })
  keras$Sequential(c(
    list(keras$Input(list(144L))), layers,
    list(keras$layers$Dense(10L, activation = "softmax"))
  ))
}

# Trains one model; returns the loss per epoch (NA after training stopped
# on NaN) and the validation accuracy.
train <- function(make_optimizer, hidden, data, valid, epochs, batch, seed, pb) {
  keras$utils$set_random_seed(as.integer(seed))
  model <- mlp(hidden)
  model$compile(
    optimizer = make_optimizer(), loss = "sparse_categorical_crossentropy",
    metrics = list("accuracy")
  )
  tick <- keras$callbacks$LambdaCallback(
    on_epoch_end = function(epoch, logs) {
      setTxtProgressBar(pb, getTxtProgressBar(pb) + 1)
    }
  )
  start <- Sys.time()
  history <- model$fit(
    data$x, data$y,
    epochs = as.integer(epochs), batch_size = as.integer(batch), verbose = 0L,
    validation_data = list(valid$x, valid$y),
    callbacks = list(tick, keras$callbacks$TerminateOnNaN())
  )$history
  loss <- unlist(history$loss)
  done <- length(history$val_accuracy)
  setTxtProgressBar(pb, getTxtProgressBar(pb) + epochs - length(loss))
  finite <- length(loss) == epochs && all(is.finite(loss))
  list(
    loss = c(loss, rep(NA, epochs - length(loss))),
    accuracy = if (finite) history$val_accuracy[[done]] else NA,
    seconds = as.numeric(Sys.time() - start, units = "secs") / length(loss)
  )
}

# ---- 2. Stability -------------------------------------------------------------

stable_data <- digits(2000, 1)
stable_valid <- digits(1000, 2)
cat("\n2. Stability: 3 ReLU layers of 128 units, batches of 16\n")
cat(sprintf("   %d of the 144 inputs are always zero\n", stable_data$blank))
seeds <- 1:3
stable_epochs <- 3
pb <- txtProgressBar(
  max = length(contenders) * length(seeds) * stable_epochs, style = 3
)
stability <- lapply(contenders, function(make) {
  lapply(seeds, function(seed) {
    train(
      make, c(128, 128, 128), stable_data, stable_valid, stable_epochs, 16, seed, pb
    )
  })
})
close(pb)
stability_table <- data.frame(
  optimizer = names(contenders),
  seeds_finite = vapply(stability, function(runs) {
    sum(vapply(runs, function(run) !anyNA(run$loss), logical(1)))
  }, numeric(1)),
  final_loss = vapply(stability, function(runs) {
    mean(vapply(runs, function(run) run$loss[stable_epochs], numeric(1)))
  }, numeric(1)),
  val_accuracy = vapply(stability, function(runs) {
    mean(vapply(runs, function(run) run$accuracy, numeric(1)))
  }, numeric(1))
)
names(stability_table)[2] <- sprintf("finite_of_%d_seeds", length(seeds))
print(stability_table, row.names = FALSE, digits = 3)
cat(paste(
  "keras.optimizers.Adafactor estimates the second moment as (r / mean(r)) c.",
  "An input that is always zero gives a zero gradient row (r ~ epsilon_1 = 1e-30),",
  "a unit dead for a whole batch a zero column (c ~ 1e-30). Their product is",
  "below float32's range, so it is 0, and the zero gradient divided by its",
  "square root is NaN. adafactor scales by rsqrt(r) and rsqrt(c) separately",
  "and never forms that product.\n",
  sep = "\n"
))

# ---- 3. Convergence -----------------------------------------------------------

train_data <- digits(6000, 3)
valid_data <- digits(2000, 4)
epochs <- 10
cat("\n3. Convergence: 2 ReLU layers of 128 units, batches of 32, 10 epochs\n")
pb <- txtProgressBar(max = length(contenders) * epochs, style = 3)
runs <- lapply(contenders, function(make) {
  train(make, c(128, 128), train_data, valid_data, epochs, 32, 1, pb)
})
close(pb)
convergence <- data.frame(
  optimizer = names(contenders),
  final_loss = vapply(runs, function(run) run$loss[epochs], numeric(1)),
  val_accuracy = vapply(runs, function(run) run$accuracy, numeric(1)),
  seconds_per_epoch = vapply(runs, function(run) run$seconds, numeric(1))
)
print(convergence, row.names = FALSE, digits = 3)
cat(paste(
  "The gradients here are dense, and with the same learning rate the two",
  "Adafactors take the same steps. They part on sparse gradients (an Embedding",
  "on TensorFlow): keras Adafactor squares each slice before duplicate rows",
  "are summed, which underestimates the second moment and lengthens its",
  "steps; adafactor squares the summed gradient, as the paper does.\n",
  sep = "\n"
))

# ---- Plot -------------------------------------------------------------------

png(file.path(out_dir, "adafactor-demo.png"), width = 1500, height = 480, res = 110)
par(mfrow = c(1, 3), mar = c(4.2, 11, 2.5, 1))
colors <- c("#c44e52", "#dd8452", "#4c72b0", "#55a868")

barplot(
  rev(memory$state_mb / 1024), names.arg = rev(memory$optimizer), horiz = TRUE,
  las = 1, cex.names = 0.7, col = "#8172b3",
  xlab = "optimizer state (GB); dashed: the weights",
  main = "1. State of a T5-base-sized model"
)
abline(v = weights_mb / 1024, lty = 2)
par(mar = c(4.2, 4.2, 2.5, 1))

plot(NULL,
  xlim = c(1, stable_epochs), ylim = c(0, 2.5), xlab = "epoch",
  ylab = "training loss (NaN ends a line)", main = "2. Stability (3 seeds)"
)
for (i in seq_along(stability)) {
  for (run in stability[[i]]) {
    lines(seq_len(stable_epochs), run$loss, type = "o", col = colors[i], pch = 20)
  }
}
failed <- stability_table[[2]] < length(seeds)
legend("topright", paste0(names(contenders), ifelse(failed, ": NaN", "")),
  col = colors, lty = 1, cex = 0.7
)

plot(NULL,
  xlim = c(1, epochs), ylim = range(unlist(lapply(runs, `[[`, "loss"))),
  log = "y", xlab = "epoch", ylab = "training loss", main = "3. Convergence"
)
for (i in seq_along(runs)) {
  lines(seq_len(epochs), runs[[i]]$loss, type = "o", col = colors[i], pch = 20)
}
legend("topright", names(contenders), col = colors, lty = 1, cex = 0.7)
invisible(dev.off())
cat("Plot written to", file.path(out_dir, "adafactor-demo.png"), "\n")
