#' Keep a full second moment for some variables
#'
#' Shaped like Keras's `exclude_from_weight_decay()`: the optimizer keeps a
#' full second moment, as Adam does, for the variables of `var_list` and for
#' those whose name or path matches one of the regular expressions of
#' `var_names` (Python's `re` syntax, searched for anywhere in the name);
#' every other variable of rank 2 or more keeps its factored statistics. Call
#' it before the optimizer is built (by its first step, or by `build()`).
#'
#' The choice is saved with the optimizer: the variables of `var_list` by
#' their paths and shapes, so that a loaded model's optimizer keeps a full
#' second moment for the same variables whatever their order. When the
#' optimizer is built, a pattern of `var_names` that matches no variable, and
#' a saved variable it cannot find, are each warned of with an R warning of
#' class `adafactor_warning`.
#'
#' @param optimizer An optimizer made by [optimizer_adafactor()], not yet
#'   built.
#' @param var_list `NULL`, or a list of variables (such as `layer$kernel`).
#' @param var_names `NULL`, or a character vector of regular expressions.
#' @return `optimizer`, invisibly, for use in a pipe.
#' @examples
#' \dontshow{if (adafactor_available()) withAutoprint(\{ # examplesIf}
#' opt <- optimizer_adafactor() |> exclude_from_factoring(var_names = "embeddings")
#' opt$get_config()$exclude_from_factoring
#' \dontshow{\}) # examplesIf}
#' @export
exclude_from_factoring <- function(optimizer, var_list = NULL, var_names = NULL) {
  if (!inherits(optimizer, "python.builtin.object") ||
    !reticulate::py_has_attr(optimizer, "exclude_from_factoring")) {
    abort_argument("optimizer", optimizer, "an optimizer made by optimizer_adafactor()")
  }
  if (!is.null(var_list) && !is.list(var_list)) {
    abort_argument("var_list", var_list, "NULL or a list of variables")
  }
  if (!is.null(var_names) && (!is.character(var_names) || anyNA(var_names))) {
    abort_argument(
      "var_names", var_names, "NULL or a character vector of regular expressions"
    )
  }
  pass_on_python_errors(optimizer$exclude_from_factoring(
    var_list = var_list, var_names = if (!is.null(var_names)) as.list(var_names)
  ))
  invisible(optimizer)
}
