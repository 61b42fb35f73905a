test_that("when_returned() waits for the innermost call to return", {
  done <- character()
  note <- function(what) done <<- c(done, what)
  outer <- function() {
    inner()
    note("outer's body")
  }
  inner <- function() when_returned(innermost_frame(outer), note, "deferred")
  outer()
  expect_identical(done, c("outer's body", "deferred"))
})

test_that("when_returned() runs at once when no such call is on the stack", {
  done <- character()
  when_returned(innermost_frame(function() NULL), function(x) done <<- x, "now")
  expect_identical(done, "now")
})

test_that("a deferred warning reaches the caller's handlers", {
  outer <- function() inner()
  inner <- function() {
    when_returned(innermost_frame(outer), warning, warningCondition("late"))
    "returned"
  }
  expect_identical(tryCatch(outer(), warning = conditionMessage), "late")
  expect_warning(expect_identical(outer(), "returned"), "late")
})
