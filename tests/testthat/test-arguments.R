# What R checks of the arguments before Python starts, and how it converts
# them for Python (R/arguments.R).

test_that("every formal is forwarded with an R type, in the formals' order", {
  expect_identical(
    names(argument_types), setdiff(names(formals(optimizer_adafactor)), "...")
  )
})

test_that("R's formals and Python's table of options agree", {
  skip_if_no_keras()
  adafactor_python()
  code <- c(
    "from adafactor.options import OPTIONS",
    "defaults = {o.name: o.default for o in OPTIONS}"
  )
  python <- reticulate::py_run_string(paste(code, collapse = "\n"), local = TRUE)
  python <- python$defaults
  r <- formals(optimizer_adafactor)
  r <- as.list(r[names(r) != "..."])
  # The same options (R's in the order of keras3's documentation), and the
  # same defaults.
  expect_setequal(names(r), names(python))
  for (name in names(python)) {
    expect_equal(eval(r[[name]]), python[[name]], label = name)
  }
})

# R refuses what only R can see; the value rules are Python's.
r_only <- list(
  list("learning_rate", "a", "a single number, a LearningRateSchedule.*not \"a\""),
  list("learning_rate", NA, "not NA"),
  list("learning_rate", c(0.1, 0.2), "not c\\(0.1, 0.2\\) \\(length 2\\)"),
  list(
    "learning_rate", function(x) x,
    "R function of no arguments, not a function of \\(x\\)"
  ),
  list("learning_rate", sqrt, "not a function of \\(x\\)"),
  list("epsilon_1", sqrt, "a single number, not a function of \\(x\\)"),
  list("epsilon_2", NA_real_, "a single number, not NA"),
  list("epsilon_2", numeric(), "not numeric\\(0\\) \\(length 0\\)"),
  list("clip_threshold", "1", "a single number, not \"1\""),
  list("relative_step", "yes", "TRUE or FALSE, not \"yes\""),
  list("relative_step", c(TRUE, FALSE), "TRUE or FALSE, not c\\(TRUE, FALSE\\)"),
  list("use_ema", NA, "TRUE or FALSE, not NA"),
  list("gradient_accumulation_steps", NA, "a single whole number, not NA"),
  list("name", 3, "a single string, not 3"),
  list("name", NA_character_, "a single string, not NA"),
  list("momentum_dtype", list("float32"), "a single string, not list"),
  list("weight_decay", matrix(1:4, 2), "a single number, not .*length 4"),
  # R's classes that is.numeric() and is.character() refuse are named.
  list("learning_rate", as.Date("2020-01-01"), "not a Date"),
  list("learning_rate", as.POSIXct("2020-01-01", tz = "UTC"), "not a POSIXct"),
  list("learning_rate", as.difftime(5, units = "mins"), "not a difftime"),
  list("decay_offset", as.Date("2020-01-01"), "a single whole number, not a Date"),
  list("epsilon_2", factor("0.5"), "a single number, not a factor"),
  list("name", factor("mine"), "a single string, not a factor"),
  # is.numeric() is TRUE for bit64's integer64, whose bits are no double.
  list("decay_offset", structure(2.5e-323, class = "integer64"), "not an integer64")
)

for (case in r_only) {
  test_that(sprintf("R refuses `%s = %s`", case[[1]], describe(case[[2]])), {
    args <- stats::setNames(list(case[[2]]), case[[1]])
    expect_error(
      do.call(optimizer_adafactor, args),
      paste0("^`", case[[1]], "` must be .*", case[[3]]),
      class = "adafactor_argument_error"
    )
  })
}

test_that("R-only checks run before Python starts", {
  result <- in_fresh_r(function() {
    library(adafactor)
    error <- tryCatch(optimizer_adafactor(epsilon_1 = "small"), error = identity)
    list(
      message = conditionMessage(error),
      python_started = reticulate::py_available(initialize = FALSE)
    )
  })
  expect_match(result$message, "`epsilon_1` must be a single number, not \"small\"")
  expect_false(result$python_started)
})

test_that("R's refusals read well", {
  expect_snapshot(error = TRUE, optimizer_adafactor(learning_rate = Sys.Date()))
  expect_snapshot(error = TRUE, optimizer_adafactor(decay_offset = Sys.time()))
  expect_snapshot(error = TRUE, optimizer_adafactor(clipvalue = factor("0.5")))
  expect_snapshot(error = TRUE, optimizer_adafactor(beta_1 = c(0.9, 0.99)))
  expect_snapshot(error = TRUE, optimizer_adafactor(learning_rate = function(x) x))
  expect_snapshot(error = TRUE, optimizer_adafactor(momentum = 0.9))
  expect_snapshot(error = TRUE, optimizer_adafactor(foo = 1, bar = 2))
  # Every argument before `...` by position, and one more.
  positional <- c(unname(formals(optimizer_adafactor)[1:14]), 15)
  expect_snapshot(error = TRUE, do.call(optimizer_adafactor, positional))
})

test_that("R's own messages stay short, whatever the value", {
  long <- strrep("a", 5000)
  cases <- list(
    list(name = list(long)),
    list(learning_rate = long),
    list(learning_rate = eval(parse(text = sprintf("function(%s) 1", long)))),
    stats::setNames(list(1), long)
  )
  for (args in cases) {
    error <- tryCatch(do.call(optimizer_adafactor, args), error = identity)
    expect_s3_class(error, "adafactor_argument_error")
    expect_lt(nchar(conditionMessage(error)), 200)
  }
})

test_that("`...` is forwarded when a name is accepted, refused otherwise", {
  args <- python_args(
    list(learning_rate = 0.1), list(future_option = 2), allowed = "future_option"
  )
  expect_identical(args, list(learning_rate = 0.1, future_option = 2))
  expect_error(
    optimizer_adafactor(momentum = 0.9),
    "Unknown argument in `...`: `momentum`", class = "adafactor_argument_error"
  )
  expect_error(
    optimizer_adafactor(foo = 1, bar = 2), "Unknown arguments .*`foo`, `bar`"
  )
  expect_error(
    optimizer_adafactor(
      0.001, -0.8, 1e-30, 0.001, 1, TRUE, NULL, NULL, NULL, NULL, FALSE, 0.99,
      NULL, "adafactor", 15
    ),
    "must be named"
  )
})

test_that("a learning-rate function must give a single number", {
  for (f in list(function() NA, function() "a", function() c(0.1, 0.2),
                 function() NULL, function() Sys.Date())) {
    expect_error(
      optimizer_adafactor(learning_rate = f),
      "^`learning_rate` must be a function returning a single number; it returned",
      class = "adafactor_argument_error"
    )
  }
  expect_snapshot(error = TRUE, optimizer_adafactor(learning_rate = function() NA))
})

test_that("a learning-rate function's values are checked whenever it is read", {
  skip_if_no_keras()
  rates <- list(matrix(0.25), 1L, "fast")
  rate <- function() {
    value <- rates[[1]]
    if (length(rates) > 1L) rates <<- rates[-1]
    value
  }
  opt <- optimizer_adafactor(learning_rate = rate)
  expect_identical(as.numeric(opt$learning_rate), 1) # the first value checked
  # reticulate 1.28 passes an R error raised in a call from Python back as
  # a plain error: the message is kept, not the class.
  expect_error(opt$learning_rate, "`learning_rate` must be a function returning")
  # A function that needs the optimizer itself fails only when Keras calls it.
  opt <- NULL
  opt <- optimizer_adafactor(learning_rate = function() 0.1 * opt$iterations$numpy())
  expect_equal(as.numeric(opt$learning_rate), 0)
})

test_that("whole numbers become Python ints and NULL becomes None", {
  skip_if_no_keras()
  opt <- optimizer_adafactor(
    use_ema = TRUE, ema_overwrite_frequency = 10,
    gradient_accumulation_steps = 4, weight_decay = NULL,
    min_dim_size_to_factor = 8, decay_offset = 2
  )
  builtins <- reticulate::import_builtins(convert = FALSE)
  as_py <- reticulate::r_to_py(opt)
  integers <- c(
    "ema_overwrite_frequency", "gradient_accumulation_steps",
    "min_dim_size_to_factor", "decay_offset"
  )
  for (name in integers) {
    value <- reticulate::py_get_attr(as_py, name)
    expect_true(reticulate::py_to_r(builtins$isinstance(value, builtins$int)))
  }
  expect_identical(opt$gradient_accumulation_steps, 4L)
  expect_true(reticulate::py_to_r(
    builtins$isinstance(reticulate::py_get_attr(as_py, "weight_decay"),
                        reticulate::py_none()$`__class__`)
  ))
})

test_that("whole numbers up to R's largest integer work, and larger are refused", {
  skip_if_no_keras()
  opt <- reticulate::r_to_py(optimizer_adafactor(decay_offset = 2^31 - 1))
  expect_identical(
    reticulate::py_str(reticulate::py_get_attr(opt, "decay_offset")), "2147483647"
  )
  # Beyond it, a double reaches Python, whose rule refuses it.
  expect_error(
    optimizer_adafactor(decay_offset = 2^53),
    "`decay_offset` must be a whole number >= 0 \\(at most 2147483647\\)",
    class = "adafactor_argument_error"
  )
})

test_that("a 1x1 matrix counts as its value", {
  skip_if_no_keras()
  opt <- optimizer_adafactor(learning_rate = matrix(0.5), epsilon_2 = array(0.01))
  expect_equal(opt$get_config()$epsilon_2, 0.01)
  expect_equal(opt$get_config()$learning_rate, 0.5, tolerance = 1e-7)
})
