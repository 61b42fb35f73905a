# Data-parallel training with JAX across processes, from R. Run one copy per
# process (one per machine), each with its own process id:
#
#   Rscript data_parallel.R <process> <processes> <coordinator> <weights.npz>
#
# for example `Rscript data_parallel.R 0 2 127.0.0.1:8476 weights.npz` and
# `Rscript data_parallel.R 1 2 127.0.0.1:8476 weights.npz` side by side. The
# coordinator is the address of process 0. Process 0 writes the trained
# weights to <weights.npz>.
args <- commandArgs(trailingOnly = TRUE)
process <- as.integer(args[[1]])
processes <- as.integer(args[[2]])
coordinator <- args[[3]]

# The backend is chosen before Python starts. On machines with accelerators
# JAX finds them; on CPUs only, it is told how many devices to make (here 4
# in all, whatever the number of processes).
Sys.setenv(
  KERAS_BACKEND = "jax",
  XLA_FLAGS = sprintf("--xla_force_host_platform_device_count=%d", 4L %/% processes)
)
library(reticulate)
jax <- import("jax")
if (processes > 1L) {
  # CPUs exchange gradients through gloo; accelerators need no setting.
  jax$config$update("jax_cpu_collectives_implementation", "gloo")
  jax$distributed$initialize(
    coordinator,
    num_processes = processes, process_id = process
  )
}
keras <- import("keras")
library(adafactor)

# Every process feeds its own rows, so Keras must not shard the data again.
keras$distribution$set_distribution(
  keras$distribution$DataParallel(auto_shard_dataset = FALSE)
)
# Every process creates its variables with the same values.
keras$utils$set_random_seed(0L)
model <- keras$Sequential(list(
  keras$Input(shape = list(8L)),
  keras$layers$Dense(16L, activation = "tanh"),
  keras$layers$Dense(4L)
))
model$compile(optimizer = optimizer_adafactor(learning_rate = 0.05), loss = "mse")

set.seed(1)
x <- matrix(rnorm(64 * 8), 64)
y <- matrix(rnorm(64 * 4), 64)
# Global batches of 16 rows: process p feeds rows p*8 + 1:8 of each.
batch <- 16L
share <- batch %/% processes
mine <- unlist(lapply(seq(0L, nrow(x) - 1L, by = batch), function(start) {
  start + process * share + seq_len(share)
}))
model$fit(x[mine, ], y[mine, ],
  batch_size = share, epochs = 2L, shuffle = FALSE, verbose = 0L
)

if (process == 0L) {
  weights <- model$get_weights()
  names(weights) <- sprintf("weight%d", seq_along(weights))
  np <- import("numpy")
  do.call(np$savez, c(list(args[[4]]), weights, rows = length(mine)))
}
