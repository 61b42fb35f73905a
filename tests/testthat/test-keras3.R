test_that("attached after keras3, adafactor's optimizer_adafactor() is found", {
  result <- attach_in_order(c("keras3", "adafactor"), stand_in_keras3())
  expect_identical(result$owner, "adafactor")
  expect_identical(result$search, c("package:adafactor", "package:keras3"))
  expect_length(result$messages, 0L)
})

test_that("attached before keras3, adafactor moves ahead and says so", {
  result <- attach_in_order(c("adafactor", "keras3"), stand_in_keras3())
  expect_identical(result$owner, "adafactor")
  expect_identical(result$search, c("package:adafactor", "package:keras3"))
  expect_length(result$messages, 1L)
  expect_match(result$messages, "keras3::optimizer_adafactor()", fixed = TRUE)
  expect_false(result$python_started)
})

test_that("keras3 alone keeps its own", {
  result <- attach_in_order("keras3", stand_in_keras3())
  expect_identical(result$owner, "keras3")
  expect_length(result$messages, 0L)
})

test_that("unloading adafactor removes its hooks and no other", {
  hooks <- list(attach = keras3_attached, onLoad = keras3_loaded)
  events <- vapply(names(hooks), function(n) packageEvent("keras3", n), "")
  saved <- lapply(events, getHook)
  on.exit(for (e in names(events)) setHook(events[[e]], saved[[e]], "replace"))
  other <- function(...) NULL
  for (e in names(events)) setHook(events[[e]], list(other, hooks[[e]]), "replace")
  unfollow_keras3()
  for (e in events) expect_identical(getHook(e), list(other))
})

test_that("the floors stay declared when keras3 is loaded after adafactor", {
  skip_if_not(
    "py_require" %in% getNamespaceExports("reticulate"), "reticulate < 1.41"
  )
  # As keras3's .onLoad: every backend requirement removed, its own added.
  on_load <- paste(
    "r <- reticulate::py_require()$packages;",
    "reticulate::py_require(grep('^tensorflow', r, value = TRUE), action = 'remove');",
    "reticulate::py_require(c('keras', 'tensorflow-cpu'))"
  )
  library <- stand_in_keras3(on_load = on_load)
  for (order in list(c("adafactor", "keras3"), c("keras3", "adafactor"))) {
    declared <- in_fresh_r(function(order, library) {
      .libPaths(c(library, .libPaths()))
      for (p in order) suppressPackageStartupMessages(library(p, character.only = TRUE))
      reticulate::py_require()$packages
    }, list(order = order, library = library), env = c(KERAS_BACKEND = "tensorflow"))
    expect_true(all(c("keras>=3.15.1", "tensorflow-cpu>=2.21") %in% declared))
  }
})

test_that("the message is a package startup message", {
  keras3_library <- stand_in_keras3()
  result <- attach_in_order(c("adafactor", "keras3"), keras3_library)
  expect_true(all(c("adafactor_keras3_message", "packageStartupMessage") %in%
    result$classes[[1]]))
  quiet <- attach_in_order(c("adafactor", "keras3"), keras3_library, quiet = TRUE)
  expect_length(quiet$messages, 0L)
  expect_identical(quiet$search, c("package:adafactor", "package:keras3"))
  quiet <- attach_in_order(
    c("adafactor", "keras3"), keras3_library, list(keras3 = list(quietly = TRUE))
  )
  expect_length(quiet$messages, 0L)
  expect_identical(quiet$search, c("package:adafactor", "package:keras3"))
})

test_that("the message reads well", {
  keras3_library <- stand_in_keras3()
  result <- attach_in_order(c("adafactor", "keras3"), keras3_library)
  expect_snapshot(cat(result$messages))
})

test_that("what the user attached is what stays attached", {
  keras3_library <- stand_in_keras3()
  # Without optimizer_adafactor() nothing is masked: nothing moves.
  for (options in list(list(exclude = "optimizer_adafactor"),
                       list(include.only = "install_adafactor"))) {
    result <- attach_in_order(
      c("adafactor", "keras3"), keras3_library, list(adafactor = options)
    )
    expect_identical(result$owner, "keras3")
    expect_identical(result$search, c("package:keras3", "package:adafactor"))
    expect_false("optimizer_adafactor" %in% result$attached)
    expect_length(result$messages, 0L)
  }
  result <- attach_in_order(
    c("adafactor", "keras3"), keras3_library,
    list(adafactor = list(exclude = "install_adafactor"))
  )
  expect_identical(result$owner, "adafactor")
  expect_identical(result$search, c("package:adafactor", "package:keras3"))
  exported <- getNamespaceExports("adafactor")
  expect_identical(result$attached, sort(setdiff(exported, "install_adafactor")))
  expect_length(result$messages, 1L)
})

test_that("a package that depends on adafactor does not stop the move", {
  result <- attach_in_order(
    c("adafactorplus", "keras3"), stand_in_keras3(dependent = TRUE)
  )
  expect_identical(result$owner, "adafactor")
  expect_identical(result$search, c("package:adafactor", "package:keras3"))
  expect_length(result$messages, 1L)
})

test_that("keras3 refused by a strict conflicts policy leaves adafactor as it was", {
  result <- attach_in_order(
    c("adafactor", "keras3"), stand_in_keras3(),
    r_options = list(conflicts.policy = "strict")
  )
  expect_identical(result$owner, "adafactor")
  expect_identical(result$search, "package:adafactor")
  expect_length(result$messages, 0L)
})

test_that("nothing moves when keras3's optimizer_adafactor() is not attached", {
  result <- attach_in_order(
    c("adafactor", "keras3"), stand_in_keras3(),
    list(keras3 = list(exclude = "optimizer_adafactor"))
  )
  expect_identical(result$owner, "adafactor")
  expect_identical(result$search, c("package:keras3", "package:adafactor"))
  expect_length(result$messages, 0L)
})

test_that("adafactor moves just ahead of keras3, not to the front", {
  result <- attach_in_order(
    c("adafactor", "keras3"), stand_in_keras3(),
    list(adafactor = list(pos = 6L), keras3 = list(pos = 4L))
  )
  expect_identical(result$positions, c(4L, 5L))
  expect_length(result$messages, 1L)
})
