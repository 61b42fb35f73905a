# The demo's sentences follow the numbers they are given: demo/report.R fed
# made-up results, without Python or training. demo/contenders.R names the
# optimizers compared.

demo_file <- function(name) {
  path <- testthat::test_path("..", "..", "demo", name)
  if (!file.exists(path)) testthat::skip("the demo is not in this copy of the package")
  path
}

demo_env <- function(name = "report.R") {
  env <- new.env(parent = globalenv())
  sys.source(demo_file(name), envir = env)
  env
}

variables <- function(nonfinite = c(0, 0, 0, 0)) {
  data.frame(
    variable = c("layer 1 kernel", "layer 1 bias", "layer 2 kernel", "layer 2 bias"),
    size = c(100, 10, 100, 10), nonfinite = nonfinite
  )
}

finite_run <- function(loss = c(2, 1.5, 1), accuracy = c(0.5, 0.6, 0.7)) {
  list(
    loss = loss, accuracy = accuracy, weights = 220, nonfinite = 0,
    first_nonfinite = NA_real_, variables = variables(), seconds = 0.1
  )
}

nan_run <- function(loss = 2.303, epochs = 3) {
  list(
    loss = c(loss, rep(NA, epochs - 1)), accuracy = c(0.1, rep(NA, epochs - 1)),
    weights = 220, nonfinite = 215, first_nonfinite = 1,
    variables = variables(c(100, 10, 100, 5)), seconds = 0.1
  )
}

contenders <- c("ours", "ours, momentum", "keras Adafactor", "Adam")

test_that("the stability table counts weights, not losses", {
  env <- demo_env()
  stability <- list(
    ours = rep(list(finite_run()), 3), "ours, momentum" = rep(list(finite_run()), 3),
    "keras Adafactor" = rep(list(nan_run()), 3), Adam = rep(list(finite_run()), 3)
  )
  table <- env$stability_table(stability, 1:3)
  keras_rows <- table[table$optimizer == "keras Adafactor", ]
  expect_equal(keras_rows$nonfinite, c(215, 215, 215))
  expect_equal(keras_rows$from_epoch, c(1, 1, 1))
  expect_equal(keras_rows$final_loss, rep(2.303, 3))
  expect_equal(table$nonfinite[table$optimizer == "ours"], c(0, 0, 0))

  said <- env$stability_sentences(stability, 1:3, "keras Adafactor", contenders[1:2])
  expect_equal(unname(said$failed), c(0, 0, 3, 0))
  expect_match(said$per_contender[[3]],
    "left non-finite weights in 3 of 3 seeds (215 of 220 in each)",
    fixed = TRUE
  )
  expect_match(said$per_contender[[3]], "finite all the same in 3 of these 3 runs")
  expect_match(said$per_contender[[3]], "entirely non-finite: layer 1 kernel")
  expect_match(said$per_contender[[3]], "partly non-finite: layer 2 bias (5 of 10)",
    fixed = TRUE
  )
  expect_match(said$per_contender[[1]], "^.ours. kept all 220 weights finite in 3 of 3")
  expect_match(paste(said$why, collapse = " "), "^Why: ")
  expect_match(paste(said$why, collapse = " "), "fused matrix")
})

test_that("a NaN loss is told apart, and no failure means no explanation", {
  env <- demo_env()
  mixed <- list(
    ours = rep(list(finite_run()), 3), "ours, momentum" = rep(list(finite_run()), 3),
    "keras Adafactor" = list(finite_run(), nan_run(NaN), finite_run()),
    Adam = rep(list(finite_run()), 3)
  )
  table <- env$stability_table(mixed, 1:3)
  expect_equal(table$epochs[table$optimizer == "keras Adafactor"], c(3, 1, 3))
  expect_true(is.nan(table$final_loss[table$optimizer == "keras Adafactor"][[2]]))
  said <- env$stability_sentences(mixed, 1:3, "keras Adafactor", contenders[1:2])
  expect_match(said$per_contender[[3]], "in 1 of 3 seeds")
  expect_match(said$per_contender[[3]], "was not finite either")
  expect_match(said$per_contender[[3]], "of seed 2")
  expect_false(any(grepl("fused", said$why)))

  finite <- lapply(mixed, function(runs) rep(list(finite_run()), 3))
  said <- env$stability_sentences(finite, 1:3, "keras Adafactor", contenders[1:2])
  expect_match(said$per_contender[[3]], "kept all 220 weights finite in 3 of 3")
  expect_null(said$why)

  ours_failed <- mixed
  ours_failed$ours <- rep(list(nan_run()), 3)
  said <- env$stability_sentences(ours_failed, 1:3, "keras Adafactor", contenders[1:2])
  expect_false(any(grepl("^Why", said$why)))
  expect_match(said$why, "does not expect")
})

test_that("the memory sentences follow the numbers", {
  env <- demo_env()
  expect_identical(
    env$format_mb(c(1.9, 852.2, 1024, 1700.6)),
    c("1.9 MiB", "852 MiB", "1 GiB", "1.66 GiB")
  )
  said <- env$memory_sentences(
    c("a", "b", "c"), c(2, 850, 1700), 850, base = "a", momentum = "b"
  )
  expect_true("\"a\" keeps 2 MiB, 0.24% of the weights, the smallest state." %in% said)
  expect_true(
    "\"c\" keeps 1.66 GiB, 2.00x the weights, 850 times as much as \"a\"." %in% said
  )
  expect_match(
    said[[length(said)]], "b. keeps 848 MiB more than .a., 1.00x the weights"
  )
  said <- env$memory_sentences(c("a", "b"), c(900, 3), 850)
  expect_true("\"b\" keeps 3 MiB, 0.35% of the weights, the smallest state." %in% said)
})

test_that("the convergence sentences name the lowest loss and test coincidence", {
  env <- demo_env()
  runs <- list(
    ours = finite_run(c(2, 1, 0.010), c(0.5, 0.8, 0.95)),
    "ours, momentum" = finite_run(c(2, 1, 0.008), c(0.5, 0.8, 0.96)),
    "keras Adafactor" = finite_run(c(2, 1, 0.010001), c(0.5, 0.8, 0.95)),
    Adam = finite_run(c(2, 1, 0.020), c(0.5, 0.8, 0.99))
  )
  said <- env$convergence_sentences(runs, c("ours", "keras Adafactor"))
  text <- paste(said$sentences, collapse = " ")
  expect_match(text, "lowest training loss: \"ours, momentum\" (0.008)", fixed = TRUE)
  expect_match(text, "the highest: \"Adam\" (0.02, 2.5x the lowest)", fixed = TRUE)
  expect_match(text, "best validation accuracy: \"Adam\" (0.990)", fixed = TRUE)
  expect_true(said$coincide)
  expect_match(text, "at most 0.01% in any epoch")
  expect_match(text, "their lines coincide on the plot")

  runs[["keras Adafactor"]] <- runs$ours
  said <- env$convergence_sentences(runs, c("ours", "keras Adafactor"))
  expect_true(said$coincide)
  expect_match(paste(said$sentences, collapse = " "), "are equal in every epoch")

  runs[["keras Adafactor"]] <- finite_run(c(2, 1, 0.0101), c(0.5, 0.8, 0.95))
  said <- env$convergence_sentences(runs, c("ours", "keras Adafactor"))
  expect_false(said$coincide)
  expect_match(paste(said$sentences, collapse = " "), "at most 0.99% in any epoch")
  expect_match(paste(said$sentences, collapse = " "), "not the same curve")

  runs$ours <- nan_run(NaN)
  said <- env$convergence_sentences(runs, c("ours", "keras Adafactor"))
  text <- paste(said$sentences, collapse = " ")
  expect_match(text, "^\"ours\" ended with non-finite weights")
  expect_match(text, "lowest training loss: .ours, momentum.")
  expect_match(text, "did not train for the same epochs: their curves are not")

  runs[["keras Adafactor"]] <- nan_run(NaN)
  said <- env$convergence_sentences(runs, c("ours", "keras Adafactor"))
  expect_match(paste(said$sentences, collapse = " "), "did not both keep a finite")
  expect_false(said$coincide)
})

test_that("the plot draws made-up results", {
  env <- demo_env()
  stability <- list(
    ours = rep(list(finite_run()), 3), "ours, momentum" = rep(list(finite_run()), 3),
    "keras Adafactor" = rep(list(nan_run()), 3), Adam = rep(list(finite_run()), 3)
  )
  runs <- lapply(stability, `[[`, 1)
  runs[["keras Adafactor"]] <- finite_run()
  file <- tempfile(fileext = ".png")
  memory <- list(
    optimizer = contenders, state_mb = c(2, 850, 850, 1700), weights_mb = 850
  )
  env$plot_demo(
    file, memory, stability, 3, c(0, 0, 3, 0), 1:3, runs,
    coincide = c("ours", "keras Adafactor")
  )
  expect_gt(file.size(file), 0)
})

test_that("the contenders are named by what each part gives them", {
  env <- demo_env("contenders.R")
  expect_identical(
    env$names_in(training = FALSE),
    c(
      ours = "adafactor", momentum = "adafactor, beta_1 0.9",
      keras_adafactor = "keras Adafactor", adam = "keras Adam"
    )
  )
  expect_identical(
    unname(env$names_in(training = TRUE)),
    c(
      "adafactor, lr 0.01", "adafactor, lr 0.01, beta_1 0.9",
      "keras Adafactor, lr 0.01", "keras Adam"
    )
  )
  expect_identical(names(env$makers(training = TRUE)), unname(env$names_in(TRUE)))
  expect_identical(
    env$options_in(env$contenders$momentum, training = TRUE),
    list(learning_rate = 0.01, beta_1 = 0.9)
  )
  expect_identical(env$options_in(env$contenders$adam, training = TRUE), list())
})
