# Running R code once a call in progress has returned.
#
# A warning raised while Python calls back into R must not be signalled
# there: a handler that exits, such as tryCatch(warning = ) or
# options(warn = 2), would unwind through Python's frames, which breaks the
# Python call (a model half saved) and can crash R.

# The frame of the innermost call on the stack to `fun`, or NULL.
innermost_frame <- function(fun) {
  for (i in rev(seq_len(sys.nframe()))) {
    if (identical(sys.function(i), fun)) {
      return(sys.frame(i))
    }
  }
  NULL
}

# Call `fun(...)` when the call whose frame is `frame` returns (or fails), or
# now when there is no such frame.
when_returned <- function(frame, fun, ...) {
  if (is.null(frame)) {
    return(fun(...))
  }
  deferred <- as.call(c(list(fun), list(...)))
  do.call(base::on.exit, list(deferred, add = TRUE), envir = frame)
  invisible(NULL)
}
