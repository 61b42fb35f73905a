# The arguments as R checks them and as Python receives them.
#
# R checks only what R alone can see, before Python starts: a value's type
# and class, its length, NA, a function's arguments. The allowed values
# (ranges, NULL) are the Python class's rules, and its errors are passed on
# (pass_on_python_errors() in R/python.R): R does not check them again. A
# refusal is an error of class `adafactor_argument_error` that names the
# argument, the value given and what is allowed.

# The R type of each argument of optimizer_adafactor(), in its order.
argument_types <- list(
  learning_rate = "rate", beta_2_decay = "number", epsilon_1 = "number",
  epsilon_2 = "number", clip_threshold = "number", relative_step = "flag",
  weight_decay = "number", clipnorm = "number", clipvalue = "number",
  global_clipnorm = "number", use_ema = "flag", ema_momentum = "number",
  ema_overwrite_frequency = "whole", name = "string",
  loss_scale_factor = "number", gradient_accumulation_steps = "whole",
  beta_1 = "number", momentum_dtype = "string", scale_parameter = "flag",
  min_dim_size_to_factor = "whole", factored = "flag", decay_offset = "whole",
  stochastic_rounding = "flag", beta_2_cap = "number", beta_2 = "number",
  factor_dims = "string", skip_nonfinite = "flag",
  record_statistics = "flag"
)

# Python keyword arguments accepted in `...`; none yet.
dots_allowed <- character()

# A number as R stores one, not a class built on numbers: is.numeric() is
# TRUE for bit64's integer64, whose bits are no double.
is_plain_number <- function(x) {
  is.numeric(x) && (!is.object(x) || inherits(x, "AsIs"))
}

# Each R type: what the error says, and the test of a single value.
type_rules <- list(
  number = list("a single number", is_plain_number),
  whole = list("a single whole number", is_plain_number),
  flag = list("TRUE or FALSE", is.logical),
  string = list("a single string", is.character),
  rate = list(
    "a single number, a LearningRateSchedule or an R function of no arguments",
    is_plain_number
  )
)

# The arguments as Python should receive them: `args` holds the named
# arguments, `dots` what came through `...`.
python_args <- function(args, dots = list(), allowed = dots_allowed) {
  for (name in names(args)) {
    args[name] <- list(r_value(name, args[[name]], argument_types[[name]]))
  }
  check_dots(dots, allowed)
  c(args, dots)
}

# One argument as Python should receive it: NULL and Python objects as they
# are, a 1x1 matrix as its one value, whole numbers that fit as integers. R's
# classes that is.numeric() refuses, such as Date and factor, are refused.
r_value <- function(name, value, type) {
  if (is.null(value) || inherits(value, "python.builtin.object")) {
    return(value)
  }
  if (is.function(value) && type == "rate" && takes_no_arguments(value)) {
    return(rate_function(value))
  }
  rule <- type_rules[[type]]
  if (!is_single(value, rule[[2]])) {
    abort_argument(name, value, rule[[1]])
  }
  python_number(as.vector(value), type) # drops dim, names and other attributes
}

# An R function as the learning rate: Keras calls it for the rate, and each
# value it returns is checked for what R can see and passed as a double. It is
# called once now as well, so that a wrong value fails here, with this
# package's error class: an R error raised while Python calls R reaches R
# again as a plain error (reticulate 1.28 keeps its message, not its class).
# A function that fails now may need what is not made yet, such as the
# optimizer itself: Keras calls it later.
rate_function <- function(f) {
  first <- tryCatch(list(f()), error = function(e) NULL)
  if (length(first) == 1L) {
    checked_rate(first[[1]])
  }
  function() checked_rate(f())
}

checked_rate <- function(value) {
  if (!is_single(value, is.numeric)) {
    argument_error(sprintf(
      "`learning_rate` must be a function returning a single number; it returned %s.",
      describe(value)
    ))
  }
  as.double(value)
}

# Whole numbers within R's integer range as integers; larger ones stay
# doubles, which the Python class refuses with its rule. Other numbers as
# doubles.
python_number <- function(value, type) {
  if (!is.numeric(value)) {
    return(value)
  }
  if (type != "whole") {
    return(as.double(value))
  }
  fits <- abs(value) <= .Machine$integer.max && value == round(value)
  if (fits) as.integer(value) else value
}

is_single <- function(value, is_type) {
  is.atomic(value) && length(value) == 1L && !is.na(value) && is_type(value)
}

takes_no_arguments <- function(f) {
  # A primitive such as sqrt has no formals of its own; args() shows them.
  params <- formals(args(f))
  required <- vapply(params, function(a) is.name(a) && !nzchar(a), TRUE)
  all(!required | names(params) == "...")
}

check_dots <- function(dots, allowed) {
  if (length(dots) == 0L) {
    return(invisible())
  }
  dot_names <- names(dots)
  if (is.null(dot_names) || any(dot_names == "")) {
    argument_error("Arguments in `...` of optimizer_adafactor() must be named.")
  }
  unknown <- setdiff(dot_names, allowed)
  if (length(unknown) > 0L) {
    accepted <- if (length(allowed)) {
      paste0("`", allowed, "`", collapse = ", ")
    } else {
      "none at present"
    }
    argument_error(sprintf(
      "Unknown argument%s in `...`: %s. Accepted in `...`: %s.",
      if (length(unknown) > 1L) "s" else "",
      shorten(paste0("`", unknown, "`", collapse = ", ")),
      accepted
    ))
  }
}

abort_argument <- function(name, value, allowed) {
  argument_error(sprintf("`%s` must be %s, not %s.", name, allowed, describe(value)))
}

argument_error <- function(message) {
  stop(errorCondition(message, class = "adafactor_argument_error", call = NULL))
}

# A value as a message shows it: short, and by its class if it has one.
describe <- function(value) {
  if (is.null(value)) {
    return("NULL")
  }
  if (is.function(value)) {
    params <- toString(names(formals(args(value))))
    return(sprintf("a function of (%s)", shorten(params)))
  }
  if (inherits(value, "python.builtin.object")) {
    return("a Python object")
  }
  shown <- if (is.object(value)) {
    class <- class(value)[[1]]
    paste(if (grepl("^[AEIOUaeiou]", class)) "an" else "a", class)
  } else {
    shorten(paste(deparse(value, width.cutoff = 60L, nlines = 2L), collapse = " "))
  }
  if (length(value) != 1L) {
    shown <- sprintf("%s (length %d)", shown, length(value))
  }
  shown
}

shorten <- function(text, width = 60L) {
  if (nchar(text) > width) paste0(substr(text, 1L, width - 3L), "...") else text
}
