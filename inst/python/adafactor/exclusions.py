"""exclude_from_factoring(): the variables that keep a full second moment,
chosen as Keras's exclude_from_weight_decay() chooses them, and found again
in a changed or loaded model by their paths."""

import re

from adafactor import _warning


class Exclusions:
    """The optimizer's exclude_from_factoring(), its config, and the
    decision for each variable at build."""

    def exclude_from_factoring(self, var_list=None, var_names=None):
        """Keep a full second moment for some variables, as Keras's
        `exclude_from_weight_decay` chooses them: the variables of
        `var_list`, and those whose name or path contains a match of one of
        the regular expressions of `var_names`. Call it before the optimizer
        is built; a pattern that matches no variable then is warned of.

        The choice is saved with the optimizer: the listed variables by
        their paths and shapes, so that a loaded model's optimizer keeps its
        state for the same variables, whatever their order; one it cannot
        find there is warned of and factored."""
        if self.built:
            raise ValueError(
                "`exclude_from_factoring()` can only be configured before the "
                "optimizer is built."
            )
        if isinstance(var_names, str):  # one name, as R passes a string
            var_names = [var_names]
        if not isinstance(var_names, (list, tuple, type(None))) or any(
            not isinstance(name, str) for name in var_names or ()
        ):
            raise TypeError(
                "Argument `var_names` must be a list of strings (regular "
                f"expressions). Received: var_names={var_names!r}"
            )
        for name in var_names or ():
            try:
                re.compile(name)
            except re.error as error:
                raise ValueError(
                    "Argument `var_names` must be a list of regular expressions. "
                    f"Received: var_names={var_names!r}, where {name!r}: {error}"
                ) from None
        if var_list is not None and not isinstance(var_list, (list, tuple)):
            raise TypeError(
                "Argument `var_list` must be a list of variables. Received: "
                f"var_list of type {type(var_list).__name__}"
            )
        self._unfactored = {
            "keys": {self._var_key(v) for v in var_list or ()},
            "var_names": list(var_names or ()),
            "variables": [_identity(v) for v in var_list or ()],
            "positions": set(),  # a config saved before paths were
        }

    def _excluded(self, position, var):
        """Whether exclude_from_factoring() names the variable at `position`
        of the variables the optimizer is built for."""
        chosen = getattr(self, "_unfactored", None)
        if chosen is None:
            return False
        return (
            self._var_key(var) in chosen["keys"]
            or self._var_key(var) in chosen.get("found", ())
            or position in chosen["positions"]
            or any(re.search(p, n) for p in chosen["var_names"] for n in _names(var))
        )

    def _find_exclusions(self, var_list):
        """Find the variables exclude_from_factoring() listed among those
        the optimizer is built for, by path and shape (see _same_variable),
        and warn of what it named and they do not hold."""
        chosen = getattr(self, "_unfactored", None)
        if chosen is None:
            return
        chosen["found"] = set()
        for path, shape in chosen["variables"]:
            var = _same_variable(path, shape, var_list)
            if var is None:
                _warning.warn(
                    f"exclude_from_factoring(): no variable is {path!r} of shape "
                    f"{shape}, which the optimizer was told to keep a full second "
                    "moment for; it is not among the variables it is built for."
                )
            else:
                chosen["found"].add(self._var_key(var))
        for pattern in chosen["var_names"]:
            if not any(re.search(pattern, n) for v in var_list for n in _names(v)):
                _warning.warn(
                    f"exclude_from_factoring(): the pattern {pattern!r} of var_names "
                    "matches no variable's name or path; nothing is excluded by it."
                )

    def _exclusions_config(self):
        """What the config saves of exclude_from_factoring(), or None."""
        chosen = getattr(self, "_unfactored", None)
        if chosen is None:
            return None
        return {
            "var_names": chosen["var_names"],
            "variables": [
                {"path": path, "shape": list(shape)}
                for path, shape in chosen["variables"]
            ],
        }

    def _exclusions_from_config(self, saved):
        """exclude_from_factoring() as the config saved it (by position, in
        configs saved before paths were)."""
        self.exclude_from_factoring(var_names=saved["var_names"])
        self._unfactored["variables"] = [
            (v["path"], tuple(v["shape"])) for v in saved.get("variables", ())
        ]
        self._unfactored["positions"] = set(saved.get("positions", ()))


def _names(variable):
    return variable.name, getattr(variable, "path", None) or variable.name


def _identity(variable):
    """What identifies a variable across saving and loading: its path (or
    name) and its shape."""
    return _names(variable)[1], tuple(int(d) for d in variable.shape)


def _same_variable(path, shape, variables):
    """The variable of `variables` that is the one of `path` and `shape`:
    of that shape, and whose path ends with the same components, as many as
    any other's, at least the layer's and the variable's (a loaded model's
    paths lose the model's name; a model made again in one session numbers
    it anew). None if no variable, or more than one, is that."""
    wanted = path.split("/")

    def common(variable):
        own = _names(variable)[1].split("/")
        count = 0
        while (
            count < min(len(own), len(wanted)) and own[-1 - count] == wanted[-1 - count]
        ):
            count += 1
        return count

    scores = [(common(v), v) for v in variables if _identity(v)[1] == shape]
    best = max((score for score, _ in scores), default=0)
    found = [v for score, v in scores if score == best]
    if best < min(2, len(wanted)) or len(found) != 1:
        return None
    return found[0]
