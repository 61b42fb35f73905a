test_that("exclude_from_factoring() keeps a full second moment for the named", {
  skip_if_no_keras()
  keras <- keras_py()
  model <- keras$Sequential(list(
    keras$Input(list(4L)),
    keras$layers$Dense(3L, name = "first"), keras$layers$Dense(2L, name = "second")
  ))
  optimizer <- optimizer_adafactor() |>
    exclude_from_factoring(var_list = list(model$layers[[2]]$kernel))
  expect_true(inherits(optimizer, "python.builtin.object"))
  optimizer$build(model$trainable_variables)
  kinds <- vapply(optimizer$variables, function(v) substring(v$name, nchar(v$name)), "")
  # iterations, learning rate; first's kernel r, c and bias v; second's v, v.
  expect_identical(kinds[-(1:2)], c("r", "c", "v", "v", "v"))
  saved <- optimizer$get_config()$exclude_from_factoring$variables
  expect_identical(saved[[1]]$path, model$layers[[2]]$kernel$path)
  # One string is a pattern, not the letters of one.
  optimizer <- optimizer_adafactor() |> exclude_from_factoring(var_names = "kernel")
  optimizer$build(model$trainable_variables)
  kinds <- vapply(optimizer$variables, function(v) substring(v$name, nchar(v$name)), "")
  expect_identical(kinds[-(1:2)], c("v", "v", "v", "v"))
})

test_that("its refusals are adafactor_argument_error, with one message", {
  skip_if_no_keras()
  refused <- list(
    list(var_names = 3), list(var_names = NA_character_),
    list(var_names = c("kernel", NA)), list(var_names = "["),
    list(var_list = "kernel")
  )
  for (args in refused) {
    error <- tryCatch(
      do.call(exclude_from_factoring, c(list(optimizer_adafactor()), args)),
      error = identity
    )
    expect_s3_class(error, "adafactor_argument_error")
    expect_match(conditionMessage(error), names(args), fixed = TRUE)
  }
  built <- optimizer_adafactor()
  built$build(list(keras_py()$Variable(matrix(0, 3, 4))))
  expect_error(
    exclude_from_factoring(built, var_names = "kernel"),
    "before the optimizer is built", class = "adafactor_argument_error"
  )
  expect_error(
    exclude_from_factoring(keras_py()$optimizers$SGD(), var_names = "kernel"),
    "`optimizer` must be an optimizer made by optimizer_adafactor()",
    fixed = TRUE, class = "adafactor_argument_error"
  )
  opt <- optimizer_adafactor()
  expect_snapshot(error = TRUE, exclude_from_factoring(opt, var_names = "["))
  expect_snapshot(error = TRUE, exclude_from_factoring(opt, var_names = NA))
})

test_that("a pattern that matches no variable is an R warning at build", {
  skip_if_no_keras()
  optimizer <- optimizer_adafactor() |> exclude_from_factoring(var_names = "nowhere")
  expect_warning(
    optimizer$build(list(keras_py()$Variable(matrix(0, 3, 4)))),
    "the pattern 'nowhere' of var_names matches no variable",
    class = "adafactor_warning"
  )
})
