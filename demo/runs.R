# What the demo measures: optimizer state, and training runs that count
# their non-finite weights. Needs Python with keras.

keras <- reticulate::import("keras")
np <- reticulate::import("numpy", convert = FALSE)

# ---- 1. Memory ------------------------------------------------------------------

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

# The optimizer state (MiB) of each contender for the weights of `shapes`,
# built but not trained; and the weights' own size.
measure_memory <- function(contenders, shapes) {
  weights <- lapply(seq_along(shapes), function(i) {
    keras$Variable(
      initializer = "zeros", shape = as.list(shapes[[i]]), dtype = "float32",
      name = sprintf("w%d", i)
    )
  })
  pb <- txtProgressBar(max = length(contenders), style = 3)
  state_mb <- vapply(seq_along(contenders), function(i) {
    optimizer <- contenders[[i]]()
    optimizer$build(weights)
    setTxtProgressBar(pb, i)
    mb <- bytes_of(optimizer$variables) / 2^20
    rm(optimizer)
    gc()
    mb
  }, numeric(1))
  close(pb)
  list(state_mb = state_mb, weights_mb = bytes_of(weights) / 2^20)
}

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

# How many of each variable's weights are NaN or infinite: a data frame with
# one row per variable ("layer 1 kernel", ...).
count_nonfinite <- function(model) {
  rows <- lapply(seq_along(model$layers), function(i) {
    lapply(model$layers[[i]]$weights, function(w) {
      values <- w$numpy()
      data.frame(
        variable = sprintf("layer %d %s", i, w$name),
        size = length(values),
        nonfinite = sum(!is.finite(values))
      )
    })
  })
  do.call(rbind, unlist(rows, recursive = FALSE))
}

# Trains one model for up to `epochs` epochs. After each epoch the weights
# themselves are checked (a finite loss does not show finite weights: see
# demo/report.R); training stops after the first epoch that leaves a weight
# non-finite. Returns a run as described in demo/report.R.
train <- function(make_optimizer, hidden, data, valid, epochs, batch, seed, pb) {
  keras$utils$set_random_seed(as.integer(seed))
  model <- mlp(hidden)
  model$compile(
    optimizer = make_optimizer(), loss = "sparse_categorical_crossentropy",
    metrics = list("accuracy")
  )
  first_nonfinite <- NA_real_
  variables <- NULL
  check <- keras$callbacks$LambdaCallback(
    on_epoch_end = function(epoch, logs) {
      variables <<- count_nonfinite(model)
      if (is.na(first_nonfinite) && any(variables$nonfinite > 0)) {
        first_nonfinite <<- epoch + 1
        reticulate::py_set_attr(model, "stop_training", TRUE)
      }
      setTxtProgressBar(pb, getTxtProgressBar(pb) + 1)
    }
  )
  start <- Sys.time()
  history <- model$fit(
    data$x, data$y,
    epochs = as.integer(epochs), batch_size = as.integer(batch), verbose = 0L,
    validation_data = list(valid$x, valid$y), callbacks = list(check)
  )$history
  seconds <- as.numeric(Sys.time() - start, units = "secs")
  loss <- as.numeric(unlist(history$loss))
  accuracy <- as.numeric(unlist(history$val_accuracy))
  setTxtProgressBar(pb, getTxtProgressBar(pb) + epochs - length(loss))
  pad <- function(x) c(x, rep(NA_real_, epochs - length(x)))
  list(
    loss = pad(loss),
    accuracy = pad(accuracy),
    weights = sum(variables$size),
    nonfinite = sum(variables$nonfinite),
    first_nonfinite = first_nonfinite,
    variables = variables,
    seconds = seconds / length(loss)
  )
}
