library(testthat)
library(adafactor)

test_check("adafactor")
