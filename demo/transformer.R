# The main job: train a small Transformer to reverse token sequences, made up
# on the fly, with optimizer_adafactor(), keras.optimizers.Adafactor and
# keras Adam side by side. Prints a table and writes a PNG plot.
#
# Run with `make demo`, or `Rscript demo/transformer.R [output-dir]`.

library(adafactor)

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args)) args[[1]] else "demo-output"
epochs <- as.integer(Sys.getenv("ADAFACTOR_DEMO_EPOCHS", "5"))
options(width = 120)
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

keras <- reticulate::import("keras")
np <- reticulate::import("numpy", convert = FALSE)
keras$utils$set_random_seed(42L)

# The task: reverse a sequence of tokens 1..15 (0 is unused).
vocab <- 16L
len <- 12L
make_data <- function(n, seed) {
  rng <- np$random$default_rng(as.integer(seed))
  x <- rng$integers(1L, vocab, size = c(as.integer(n), len))$astype("int32")
  list(x = x, y = np$ascontiguousarray(np$flip(x, axis = 1L)))
}
train <- make_data(6000, 1)
valid <- make_data(2000, 2)

layers <- keras$layers
add <- function(a, b) layers$Add()(list(a, b))

# Sinusoidal position encodings (Vaswani et al., 2017).
positions <- function(d_model) {
  angle <- outer(0:(len - 1), 0:(d_model %/% 2 - 1), function(p, i) {
    p / 10000^(2 * i / d_model)
  })
  np$array(cbind(sin(angle), cos(angle)), dtype = "float32")
}

# Token embeddings plus positions, encoder blocks, a softmax per position.
transformer <- function(d_model = 64L, heads = 4L, ff = 128L, blocks = 2L) {
  tokens <- keras$Input(list(len), dtype = "int32")
  h <- keras$ops$add(layers$Embedding(vocab, d_model)(tokens), positions(d_model))
  for (i in seq_len(blocks)) {
    attention <- layers$MultiHeadAttention(heads, d_model %/% heads)
    h <- layers$LayerNormalization()(add(h, attention(h, h)))
    f <- layers$Dense(ff, activation = "relu")(h)
    h <- layers$LayerNormalization()(add(h, layers$Dense(d_model)(f)))
  }
  keras$Model(tokens, layers$Dense(vocab, activation = "softmax")(h))
}

state_mb <- function(optimizer) {
  bytes <- vapply(optimizer$variables, function(v) {
    value <- v$numpy()
    length(value) * reticulate::py_to_r(np$dtype(v$dtype)$itemsize)
  }, numeric(1))
  sum(bytes) / 2^20
}

contenders <- list(
  "adafactor (this package)" = function() optimizer_adafactor(learning_rate = 0.01),
  "keras Adafactor" = function() keras$optimizers$Adafactor(learning_rate = 0.01),
  "keras Adam" = function() keras$optimizers$Adam(learning_rate = 0.001)
)

results <- list()
curves <- list()
for (label in names(contenders)) {
  cat("\n== ", label, " ==\n", sep = "")
  keras$utils$set_random_seed(7L)
  model <- transformer()
  optimizer <- contenders[[label]]()
  model$compile(
    optimizer = optimizer,
    loss = "sparse_categorical_crossentropy",
    metrics = list("accuracy")
  )
  started <- Sys.time()
  history <- model$fit(
    train$x, train$y,
    validation_data = list(valid$x, valid$y),
    epochs = epochs, batch_size = 64L, verbose = 1L
  )
  seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
  h <- history$history
  curves[[label]] <- unlist(h$loss)
  params <- sum(vapply(model$trainable_variables, function(v) length(v$numpy()), 1))
  results[[label]] <- data.frame(
    optimizer = label,
    final_loss = signif(utils::tail(unlist(h$val_loss), 1), 3),
    accuracy = round(utils::tail(unlist(h$val_accuracy), 1), 4),
    state_mb = round(state_mb(optimizer), 4),
    state_per_param = round(state_mb(optimizer) * 2^20 / 4 / params, 3),
    sec_per_epoch = round(seconds / epochs, 2),
    check.names = FALSE
  )
}

table <- do.call(rbind, results)
rownames(table) <- NULL
cat(
  "\nReversing", len, "tokens,", epochs,
  "epochs; loss and accuracy on held-out data:\n"
)
print(table, row.names = FALSE)

plot_path <- normalizePath(file.path(out_dir, "adafactor-demo.png"), mustWork = FALSE)
grDevices::png(plot_path, width = 1100, height = 450, res = 110, type = "cairo")
graphics::par(mfrow = c(1, 2), mar = c(4.2, 4.2, 2.5, 1))
colours <- c("#1b9e77", "#d95f02", "#7570b3")
graphics::matplot(
  seq_len(epochs), do.call(cbind, curves), type = "b", pch = 19, lty = 1,
  col = colours, xlab = "epoch", ylab = "training loss", main = "Loss"
)
graphics::legend("topright", names(curves), col = colours, lty = 1, pch = 19, bty = "n")
graphics::barplot(
  table$state_mb, names.arg = c("adafactor", "keras Adafactor", "keras Adam"),
  col = colours, ylab = "MB", main = "Optimizer state", cex.names = 0.85
)
invisible(grDevices::dev.off())
cat("\nPlot written to", plot_path, "\n")
