# The demo's tables, sentences and figure, computed from the results of its
# own run. Plain R: nothing here starts Python, so tests/testthat/test-demo.R
# can feed these functions made-up results.
#
# A training run (see train() in demo/runs.R) is a list of
#   loss, accuracy     training loss and validation accuracy per epoch, NA
#                      after training stopped
#   weights            the number of weights in the model
#   nonfinite          how many of them are NaN or infinite after the last
#                      epoch trained
#   first_nonfinite    the first epoch after which a weight was not finite,
#                      NA if none was
#   variables          a data frame (variable, size, nonfinite) for the
#                      weights after the last epoch trained
#   seconds            seconds per epoch trained

# ---- Formatting ---------------------------------------------------------------

format_count <- function(x) format(x, big.mark = ",", scientific = FALSE, trim = TRUE)

# Sizes in MiB (2^20 bytes), as the demo measures them; GiB from 1000 MiB.
format_mb <- function(mb) {
  vapply(mb, function(x) {
    gb <- x >= 1000
    value <- if (gb) signif(x / 1024, 3) else round(x, if (x < 100) 1 else 0)
    value <- format(value, scientific = FALSE)
    paste(value, if (gb) "GiB" else "MiB")
  }, character(1))
}

# A contender's name in a sentence (the names have commas of their own).
q <- function(name) sprintf("\"%s\"", name)

format_share <- function(ratio) {
  ifelse(ratio < 0.1, sprintf("%.2g%% of", 100 * ratio), sprintf("%.2fx", ratio))
}

# "a", "a and b", "a, b and c".
enumerate <- function(x) {
  if (length(x) <= 1) return(paste(x))
  paste(paste(x[-length(x)], collapse = ", "), "and", x[length(x)])
}

# Sentences into paragraphs of at most `width` characters, for cat().
paragraph <- function(..., width = 79) {
  paste0(paste(strwrap(paste(...), width = width), collapse = "\n"), "\n")
}

# Prints sentences, each as a paragraph.
say <- function(...) {
  cat(paste0(vapply(c(...), paragraph, ""), collapse = ""))
}

# Epochs not trained are NA; an epoch trained may have a NaN loss.
trained <- function(x) !is.na(x) | is.nan(x)

last_trained <- function(x) {
  done <- which(trained(x))
  if (length(done)) x[[max(done)]] else NA_real_
}

epochs_trained <- function(run) sum(trained(run$loss))

# ---- 1. Memory ------------------------------------------------------------------

# `state_mb` and `weights_mb` in MiB.
memory_table <- function(optimizers, state_mb, weights_mb) {
  data.frame(
    optimizer = optimizers,
    state_mb = round(state_mb, 1),
    x_weights = round(state_mb / weights_mb, 4)
  )
}

# `momentum` names the contender that adds momentum to `base`, or is NULL.
memory_sentences <- function(optimizers, state_mb, weights_mb,
                             base = NULL, momentum = NULL) {
  smallest <- which.min(state_mb)
  times <- ifelse(
    seq_along(state_mb) == smallest, "the smallest state",
    sprintf(
      "%s times as much as %s", format_count(round(state_mb / state_mb[[smallest]])),
      q(optimizers[[smallest]])
    )
  )
  each <- sprintf(
    "%s keeps %s, %s the weights, %s.", q(optimizers), format_mb(state_mb),
    format_share(state_mb / weights_mb), times
  )
  added <- if (!is.null(base) && !is.null(momentum)) {
    extra <- state_mb[optimizers == momentum] - state_mb[optimizers == base]
    sprintf(
      "The momentum buffer: %s keeps %s more than %s, %s the weights.",
      q(momentum), format_mb(extra), q(base), format_share(extra / weights_mb)
    )
  }
  c(sprintf("The float32 weights take %s.", format_mb(weights_mb)), each, added)
}

# ---- 2. Stability ---------------------------------------------------------------

# One row per contender and seed: how many weights were not finite after the
# last epoch trained, the epoch after which they first were (NA: never), the
# epochs trained, and the loss and validation accuracy of the last one.
# `stability` is a named list (one element per contender) of lists of runs,
# one per seed.
stability_table <- function(stability, seeds) {
  rows <- lapply(names(stability), function(name) {
    runs <- stability[[name]]
    data.frame(
      optimizer = name,
      seed = seeds,
      nonfinite = vapply(runs, function(run) run$nonfinite, numeric(1)),
      from_epoch = vapply(
        runs, function(run) as.numeric(run$first_nonfinite), numeric(1)
      ),
      epochs = vapply(runs, epochs_trained, numeric(1)),
      final_loss = vapply(runs, function(run) last_trained(run$loss), numeric(1)),
      val_accuracy = vapply(
        runs, function(run) last_trained(run$accuracy), numeric(1)
      )
    )
  })
  do.call(rbind, rows)
}

# The variables of a run by how many of their weights are not finite:
# "entirely non-finite: layer 1 kernel and layer 1 bias; partly: layer 3 bias
# (5 of 128); finite: layer 4 kernel".
describe_variables <- function(variables) {
  all <- variables$nonfinite == variables$size & variables$size > 0
  none <- variables$nonfinite == 0
  some <- !all & !none
  parts <- c(
    if (any(all)) paste("entirely non-finite:", enumerate(variables$variable[all])),
    if (any(some)) {
      paste("partly non-finite:", enumerate(sprintf(
        "%s (%s of %s)", variables$variable[some],
        format_count(variables$nonfinite[some]), format_count(variables$size[some])
      )))
    },
    if (any(none)) paste("finite:", enumerate(variables$variable[none]))
  )
  paste(parts, collapse = "; ")
}

# The loss of the epoch after which a run's weights were first not finite.
loss_when_nonfinite <- function(run) {
  if (is.na(run$first_nonfinite)) NA_real_ else run$loss[[run$first_nonfinite]]
}

# What one contender's weights did over the seeds, from the counts.
contender_sentence <- function(name, runs, seeds) {
  bad <- vapply(runs, function(run) run$nonfinite > 0, logical(1))
  if (!any(bad)) {
    return(sprintf(
      "%s kept all %s weights finite in %d of %d seeds.", q(name),
      format_count(runs[[1]]$weights), length(runs), length(runs)
    ))
  }
  counts <- vapply(runs[bad], function(run) {
    sprintf("%s of %s", format_count(run$nonfinite), format_count(run$weights))
  }, character(1))
  counts <- if (length(counts) > 1 && length(unique(counts)) == 1) {
    paste(counts[[1]], "in each")
  } else {
    enumerate(counts)
  }
  first <- vapply(runs[bad], function(run) run$first_nonfinite, numeric(1))
  example <- runs[bad][[1]]
  loss_then <- vapply(runs[bad], loss_when_nonfinite, numeric(1))
  finite_loss <- is.finite(loss_then)
  paste(
    sprintf(
      paste(
        "%s left non-finite weights in %d of %d seeds (%s), first after",
        "epoch %s. After epoch %d of seed %d: %s."
      ),
      q(name), sum(bad), length(runs), counts,
      enumerate(unique(sort(first))), example$first_nonfinite, seeds[bad][[1]],
      describe_variables(example$variables)
    ),
    if (any(finite_loss)) {
      sprintf(
        paste(
          "The training loss of that epoch was finite all the same in %d of",
          "these %d runs (%s): the loss alone would not show it."
        ),
        sum(finite_loss), sum(bad),
        enumerate(unique(sprintf("%.3f", loss_then[finite_loss])))
      )
    } else {
      "The training loss of that epoch was not finite either."
    }
  )
}

# `keras_adafactor` names the contender whose failure the demo sets out to
# show, `ours` the contenders of this package. The explanation of that
# failure is printed only when this run shows it: keras Adafactor with
# non-finite weights, ours without.
stability_sentences <- function(stability, seeds, keras_adafactor, ours) {
  failed <- vapply(stability, function(runs) {
    sum(vapply(runs, function(run) run$nonfinite > 0, logical(1)))
  }, numeric(1))
  finite_loss <- vapply(stability[[keras_adafactor]], function(run) {
    run$nonfinite > 0 && is.finite(loss_when_nonfinite(run))
  }, logical(1))
  per_contender <- vapply(names(stability), function(name) {
    contender_sentence(name, stability[[name]], seeds)
  }, character(1), USE.NAMES = FALSE)
  why <- if (failed[[keras_adafactor]] > 0 && all(failed[ours] == 0)) {
    c(
      paste(
        "Why: keras.optimizers.Adafactor estimates the second moment as",
        "(r / mean(r)) c. An input that is always zero gives a zero gradient row",
        "(r ~ epsilon_1 = 1e-30), a unit dead for a whole batch a zero column",
        "(c ~ 1e-30). Their product is below float32's normal range; where it",
        "is flushed to 0, the zero gradient divided by its square root is NaN.",
        "adafactor scales by rsqrt(r) and rsqrt(c) separately and never forms",
        "that product."
      ),
      if (any(finite_loss)) {
        paste(
          "A finite loss beside non-finite weights: TensorFlow's fused matrix",
          "product and ReLU on x86 CPUs can turn NaN activations into 0, so",
          "the demo counts the weights, not the loss."
        )
      }
    )
  } else if (any(failed[ours] > 0)) {
    paste(
      "This package's optimizer left non-finite weights here, which the demo",
      "does not expect: please report it with this output."
    )
  }
  list(per_contender = per_contender, why = why, failed = failed)
}

# ---- 3. Convergence -------------------------------------------------------------

convergence_table <- function(runs) {
  data.frame(
    optimizer = names(runs),
    nonfinite_weights = vapply(runs, function(run) run$nonfinite, numeric(1)),
    final_loss = vapply(runs, function(run) last_trained(run$loss), numeric(1)),
    val_accuracy = vapply(runs, function(run) last_trained(run$accuracy), numeric(1)),
    seconds_per_epoch = vapply(runs, function(run) run$seconds, numeric(1)),
    row.names = NULL
  )
}

# The largest relative difference between two loss curves over the epochs
# trained; Inf when they were not trained for the same epochs or a loss is
# not finite.
curve_difference <- function(a, b) {
  if (!comparable(a, b)) return(Inf)
  scale <- pmax(abs(a), abs(b))
  max(ifelse(scale == 0, 0, abs(a - b) / scale)[trained(a)])
}

comparable <- function(a, b) {
  identical(trained(a), trained(b)) && any(trained(a)) &&
    all(is.finite(c(a[trained(a)], b[trained(b)])))
}

# Whether two loss curves are the same line on the plot: within `tolerance`
# of each other, relatively, at every epoch.
coincide <- function(a, b, tolerance = 1e-3) {
  difference <- curve_difference(a, b)
  is.finite(difference) && difference <= tolerance
}

# `pair`: the two contenders with the same learning rate, whose curves are
# compared.
convergence_sentences <- function(runs, pair, tolerance = 1e-3) {
  table <- convergence_table(runs)
  epochs <- length(runs[[1]]$loss)
  finite <- table$nonfinite_weights == 0 & is.finite(table$final_loss)
  nonfinite <- if (any(!finite)) {
    sprintf(
      "%s ended with non-finite weights (or loss) and %s left out below.",
      enumerate(q(table$optimizer[!finite])), if (sum(!finite) == 1) "is" else "are"
    )
  }
  ranked <- if (sum(finite) >= 2) {
    ok <- table[finite, ]
    by_loss <- ok[order(ok$final_loss), ]
    best_accuracy <- ok[ok$val_accuracy == max(ok$val_accuracy), ]
    c(
      sprintf(
        paste(
          "After %d epochs, the lowest training loss: %s (%.3g); the highest:",
          "%s (%.3g, %.1fx the lowest)."
        ),
        epochs, q(by_loss$optimizer[[1]]), by_loss$final_loss[[1]],
        q(by_loss$optimizer[[nrow(by_loss)]]), by_loss$final_loss[[nrow(by_loss)]],
        by_loss$final_loss[[nrow(by_loss)]] / by_loss$final_loss[[1]]
      ),
      sprintf(
        "The best validation accuracy: %s (%.3f)%s.",
        enumerate(q(best_accuracy$optimizer)), best_accuracy$val_accuracy[[1]],
        if (nrow(best_accuracy) > 1) ", a tie" else ""
      )
    )
  }
  difference <- curve_difference(runs[[pair[[1]]]]$loss, runs[[pair[[2]]]]$loss)
  same <- is.finite(difference) && difference <= tolerance
  compared <- if (is.finite(difference)) {
    sprintf(
      paste(
        "%s and %s, at the same learning rate on these dense gradients: their",
        "training losses %s (%.3g and %.3g at the end), so %s."
      ),
      q(pair[[1]]), q(pair[[2]]),
      if (difference == 0) {
        "are equal in every epoch"
      } else {
        sprintf("differ by at most %.2g%% in any epoch", 100 * difference)
      },
      last_trained(runs[[pair[[1]]]]$loss), last_trained(runs[[pair[[2]]]]$loss),
      if (same) {
        "their lines coincide on the plot (drawn in different styles)"
      } else {
        "they are not the same curve"
      }
    )
  } else {
    sprintf(
      "%s and %s %s: their curves are not compared.", q(pair[[1]]), q(pair[[2]]),
      if (identical(trained(runs[[pair[[1]]]]$loss), trained(runs[[pair[[2]]]]$loss))) {
        "did not both keep a finite loss"
      } else {
        "did not train for the same epochs"
      }
    )
  }
  list(
    sentences = c(nonfinite, ranked, compared),
    coincide = same,
    difference = difference
  )
}

# ---- Figure ---------------------------------------------------------------------

# One style per contender, so that lines which fall on each other stay
# visible: the first is drawn widest and the later ones narrower on top, each
# with its own line type and marker.
contender_styles <- function(n) {
  data.frame(
    col = rep_len(c("#c44e52", "#dd8452", "#4c72b0", "#55a868"), n),
    lty = rep_len(c(1, 2, 1, 3), n),
    lwd = rep_len(c(1.5, 1.5, 4, 2), n),
    pch = rep_len(c(20, 1, 4, 17), n),
    stringsAsFactors = FALSE
  )
}

# Draw widest first.
drawing_order <- function(styles) order(-styles$lwd)

plot_memory <- function(optimizers, state_mb, weights_mb) {
  low <- 10^floor(log10(min(state_mb, weights_mb) / 2))
  high <- 10^ceiling(log10(max(state_mb, weights_mb) * 20))
  mids <- barplot(
    rev(state_mb), names.arg = rev(optimizers), horiz = TRUE, log = "x",
    xlim = c(low, high), las = 1, cex.names = 0.75, col = "#8172b3",
    axes = FALSE, xlab = "optimizer state (log scale); dashed: the weights",
    main = "1. State of a T5-base-sized model"
  )
  ticks <- c(10^seq(log10(low), 2), 1024 * 10^seq(0, log10(high / 1024)))
  ticks <- ticks[ticks >= low & ticks <= high]
  axis(1, at = ticks, labels = format_mb(ticks), cex.axis = 0.8)
  abline(v = weights_mb, lty = 2)
  text(rev(state_mb), mids, format_mb(rev(state_mb)), pos = 4, cex = 0.85)
  top <- par("usr")[4] - 0.02 * diff(par("usr")[3:4])
  text(weights_mb, top, paste("weights:", format_mb(weights_mb)),
    pos = 4, cex = 0.75, offset = 0.2
  )
}

plot_stability <- function(stability, epochs, failed, seeds) {
  styles <- contender_styles(length(stability))
  losses <- unlist(lapply(stability, function(runs) lapply(runs, `[[`, "loss")))
  top <- max(c(losses[is.finite(losses)], 1)) * 1.1
  plot(NULL,
    xlim = c(1, epochs), ylim = c(0, top), xlab = "epoch", xaxt = "n",
    ylab = "training loss", main = sprintf("2. Stability (%d seeds)", length(seeds))
  )
  axis(1, at = seq_len(epochs))
  for (i in drawing_order(styles)) {
    for (run in stability[[i]]) {
      lines(seq_len(epochs), run$loss,
        type = "o", col = styles$col[i], lty = styles$lty[i], pch = 20,
        lwd = min(styles$lwd[i], 2)
      )
      if (run$nonfinite > 0) {
        at <- run$first_nonfinite
        y <- if (is.finite(run$loss[at])) run$loss[at] else top
        points(at, y, pch = 4, cex = 2.5, lwd = 2.5, col = styles$col[i])
      }
    }
  }
  labels <- ifelse(
    failed > 0,
    sprintf("%s: non-finite weights, %d of %d seeds", names(stability), failed,
      length(seeds)
    ),
    names(stability)
  )
  legend("bottomleft", c(labels, if (any(failed > 0)) {
    "X: weights non-finite, training stopped"
  }),
  col = c(styles$col, if (any(failed > 0)) "black"),
  lty = c(styles$lty, if (any(failed > 0)) NA),
  pch = c(rep(NA, length(labels)), if (any(failed > 0)) 4),
  cex = 0.7, bg = "white"
  )
}

# `coincide`: the pair of contenders whose curves fall on each other in this
# run, or NULL.
plot_convergence <- function(runs, coincide = NULL) {
  styles <- contender_styles(length(runs))
  epochs <- length(runs[[1]]$loss)
  losses <- unlist(lapply(runs, `[[`, "loss"))
  losses <- losses[is.finite(losses) & losses > 0]
  plot(NULL,
    xlim = c(1, epochs), ylim = range(losses), log = "y", xlab = "epoch",
    ylab = "training loss", main = "3. Convergence"
  )
  for (i in drawing_order(styles)) {
    lines(seq_len(epochs), runs[[i]]$loss,
      type = "o", col = styles$col[i], lty = styles$lty[i], lwd = styles$lwd[i],
      pch = styles$pch[i]
    )
  }
  labels <- names(runs)
  nonfinite <- vapply(runs, function(run) run$nonfinite > 0, logical(1))
  labels[nonfinite] <- paste0(labels[nonfinite], ": non-finite weights")
  if (!is.null(coincide)) {
    later <- match(coincide[[2]], names(runs))
    labels[later] <- paste0(labels[later], " (coincides with ", coincide[[1]], ")")
  }
  legend("topright", labels,
    col = styles$col, lty = styles$lty, lwd = styles$lwd, pch = styles$pch,
    cex = 0.7, bg = "white"
  )
}

plot_demo <- function(file, memory, stability, stable_epochs, failed, seeds,
                      runs, coincide = NULL) {
  png(file, width = 1500, height = 480, res = 110)
  on.exit(dev.off())
  par(mfrow = c(1, 3), mar = c(4.2, 11, 2.5, 1))
  plot_memory(memory$optimizer, memory$state_mb, memory$weights_mb)
  par(mar = c(4.2, 4.2, 2.5, 1))
  plot_stability(stability, stable_epochs, failed, seeds)
  plot_convergence(runs, coincide)
  invisible(file)
}
