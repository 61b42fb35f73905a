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

test_that("unloading adafactor removes its hook and no other", {
  event <- packageEvent("keras3", "attach")
  saved <- getHook(event)
  on.exit(setHook(event, saved, "replace"))
  other <- function(...) NULL
  setHook(event, list(other, keras3_attached), "replace")
  unfollow_keras3()
  expect_identical(getHook(event), list(other))
})
