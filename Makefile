# Everything a fresh Debian 12 or 13 machine needs, installed idempotently.
#   make demo          the main job: memory, stability and convergence, from R
#   make test          lint, the Python suites, R CMD check --as-cran, the R tests, the site
#   make test-current  the Python suite on the newest releases (part of test)
#   make bench         the benchmark (not a test)
#   make site          the pkgdown site, in docs/ (built offline)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(abspath $(VENV))/bin/python
VENV_CURRENT := .venv-current
PY_CURRENT := $(abspath $(VENV_CURRENT))/bin/python
RLIB := $(abspath .rlib)
STAMPS := .make
BUILD := .check
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
R := R_LIBS=$(RLIB) Rscript

APT_PACKAGES := python3-venv python3-dev r-base-dev r-cran-reticulate \
	r-cran-testthat r-cran-roxygen2 r-cran-knitr r-cran-rmarkdown \
	r-cran-withr r-cran-callr r-cran-lintr r-cran-covr r-cran-pkgdown pandoc

PY_SOURCES := $(wildcard inst/python/adafactor/*.py inst/python/adafactor/backend/*.py)
R_SOURCES := DESCRIPTION $(wildcard R/*.R) $(PY_SOURCES)

export RETICULATE_PYTHON := $(PY)
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL := 3
export _R_CHECK_FORCE_SUGGESTS_ := false
export ADAFACTOR_R_LIBRARY := $(RLIB)

.PHONY: setup demo bench test lint test-python test-current check coverage docs site \
	site-check test-tensorflow test-jax test-torch
.DEFAULT_GOAL := test

setup: $(STAMPS)/venv $(STAMPS)/rpkg

$(STAMPS)/apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    --no-install-recommends $$missing; \
	fi
	@mkdir -p $(STAMPS) && touch $@

# The R package's Python: numpy and rpy2 are picked to fit Debian's R.
$(STAMPS)/venv: requirements.txt tools/machine_requirements.py pyproject.toml | $(STAMPS)/apt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PYTHON) tools/machine_requirements.py > $(STAMPS)/machine-requirements.txt
	$(PY) -m pip install -q -r requirements.txt -r $(STAMPS)/machine-requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

# The newest releases, as a Python user installs them today.
$(STAMPS)/venv-current: requirements-current.txt pyproject.toml | $(STAMPS)/apt
	test -x $(PY_CURRENT) || $(PYTHON) -m venv $(VENV_CURRENT)
	$(PY_CURRENT) -m pip install -q -r requirements-current.txt
	$(PY_CURRENT) -m pip install -q --no-deps -e .
	@touch $@

# The R package, installed into a project-local library.
$(STAMPS)/rpkg: $(R_SOURCES) NAMESPACE | $(STAMPS)/apt
	mkdir -p $(RLIB)
	R CMD INSTALL --no-multiarch -l $(RLIB) . >/dev/null
	@touch $@

# NAMESPACE and man/ are generated from the roxygen comments in R/.
docs: | $(STAMPS)/apt
	Rscript -e 'roxygen2::roxygenise()'

demo: setup
	$(R) demo/adafactor.R demo-output

# Not a test: writes bench/results.md, bench/results.json, bench/bench.png
# and bench/table2.png (python -m bench --quick --out DIR: small sizes,
# elsewhere).
bench: setup
	$(PY) -m bench

# The site builds offline. pkgdown.internet = FALSE stops pkgdown's own CRAN
# look-ups, but not downlit's: to link library(keras3) (a package not
# installed here) downlit reads CRAN's package list, and fails without a
# network (r-lib/downlit#177 and #184, open; no option turns it off). The
# build hands downlit an empty list instead, so such calls stay unlinked.
# docs/ is made anew each time.
SITE_R := options(pkgdown.internet = FALSE); \
	if (exists("CRAN_urls", asNamespace("downlit"), inherits = FALSE)) \
	  utils::assignInNamespace("CRAN_urls", function() \
	    data.frame(Package = character(), URL = character()), "downlit"); \
	pkgdown::build_site(install = FALSE, new_process = FALSE, preview = FALSE)
site: setup
	rm -rf docs
	$(R) -e '$(SITE_R)'

# Part of test: the site has the reference pages, and every article, whose
# code ran (without Python an article says it was not run, and the
# benchmark's without bench/ that the report is not there; pandoc may break
# those sentences across lines).
ARTICLES := $(patsubst vignettes/%.Rmd,%,$(wildcard vignettes/*.Rmd))
NOT_RUN := was[[:space:]]+not[[:space:]]+found[[:space:]]+when|is[[:space:]]+not[[:space:]]+in[[:space:]]+this[[:space:]]+copy
site-check: site
	test -s docs/reference/optimizer_adafactor.html
	test -s docs/reference/callback_adafactor_statistics.html
	for article in $(ARTICLES); do \
	  test -s docs/articles/$$article.html; \
	  if grep -Ezq '$(NOT_RUN)' docs/articles/$$article.html; then \
	    echo "docs/articles/$$article.html: its code did not run"; exit 1; fi; \
	done

lint: setup
	$(PY) -m ruff check inst/python tests/python bench tools
	$(PY) -m ruff format --check inst/python tests/python bench tools
	$(R) -e 'lints <- lintr::lint_package(); print(lints); quit(status = length(lints) > 0)'

# Where a test runs is its mark (pyproject.toml lists them), and each runs
# once where it can differ: on each (release, backend) pair the two
# environments hold. TensorFlow is the same release in both, and runs
# every test once, in .venv: the R package's (rpy2, on one backend), the
# benchmark's, the set-up's and the distributed ones. torch is the same
# release in both too (requirements-current.txt says why), and runs in
# .venv all but what runs once; where .venv keeps numpy 1.26 (reticulate
# before 1.35), neither runs on numpy 2. jax differs between the two: in
# .venv, the R package's jax runs the update rule and how it is made; in
# .venv-current (the newest releases), all but what runs once, the jax
# distributed tests among them. --durations keeps the slow ones in sight.
PYTEST = -m pytest tests/python -q -p no:cacheprovider --durations=25
ONCE := r or bench or machine or device_check
test-tensorflow: setup
	KERAS_BACKEND=tensorflow $(PY) $(PYTEST) -m 'not device_check'

test-jax: setup
	KERAS_BACKEND=jax $(PY) $(PYTEST) \
	  -m '(update_rule or implementation or device_check) and not distributed'

test-torch: setup
	KERAS_BACKEND=torch $(PY) $(PYTEST) -m 'not ($(ONCE)) and not distributed'

test-python: test-tensorflow test-jax test-torch

# The newest releases: jax (the suites of TensorFlow and torch, the same
# releases as in .venv, are collected). What is about how the step is made
# runs once.
CURRENT := not ($(ONCE)) and not implementation
# Its environment is made in its recipe, not as a prerequisite: under -j2,
# make passes over a goal whose prerequisite is still being made and queues
# it behind the others, and this, the longest with TensorFlow's, ran last.
test-current: | $(STAMPS)/apt
	$(MAKE) --no-print-directory $(STAMPS)/venv-current
	KERAS_BACKEND=tensorflow $(PY_CURRENT) $(PYTEST) -m '$(CURRENT)' \
	  --collect-only | tail -1
	KERAS_BACKEND=torch $(PY_CURRENT) $(PYTEST) -m '$(CURRENT) and not distributed' \
	  --collect-only | tail -1
	KERAS_BACKEND=jax $(PY_CURRENT) $(PYTEST) -m '$(CURRENT) and not tensorflow_workers'

# R CMD check as --as-cran makes it, less what needs a network: --as-cran
# itself would look up CRAN's package lists and a clock on the web, so its
# settings are given one by one, those that look things up left out, and
# CRAN's incoming checks (the Title, the maintainer) run offline. R CMD
# build runs the articles once, as a tarball for CRAN holds them built,
# with their index (build/vignette.rds); the check does not run them again,
# nor the tests: the testthat suite runs once, under covr (make coverage),
# which fails when a test fails. Any NOTE fails but the one this machine
# causes: keras3, a suggested package, cannot be installed here.
AS_CRAN_OFFLINE := _R_CHECK_CRAN_INCOMING_=true _R_CHECK_CRAN_INCOMING_REMOTE_=false \
	_R_CHECK_TIMINGS_=10 _R_CHECK_INSTALL_DEPENDS_=true _R_CHECK_DOT_FIRSTLIB_=true \
	_R_CHECK_PACKAGES_USED_CRAN_INCOMING_NOTES_=true _R_CHECK_LIMIT_CORES_=true \
	_R_CHECK_SCREEN_DEVICE_=stop _R_CHECK_CODE_USAGE_VIA_NAMESPACES_=true \
	_R_CHECK_CODE_USAGE_WITH_ONLY_BASE_ATTACHED_=true \
	_R_CHECK_S3_METHODS_NOT_REGISTERED_=true \
	_R_CHECK_PACKAGES_USED_IGNORE_UNUSED_IMPORTS_=false \
	_R_CHECK_CONNECTIONS_LEFT_OPEN_=true _R_CHECK_R_DEPENDS_=warn \
	_R_CHECK_RD_CONTENTS_KEYWORDS_=true _R_CHECK_LENGTH_1_LOGIC2_=abort,verbose \
	_R_CHECK_CODOC_VARIABLES_IN_USAGES_=true _R_CHECK_DATALIST_=true \
	_R_CHECK_BASHISMS_=true _R_CHECK_EXCESSIVE_IMPORTS_=20 \
	_R_CHECK_DEPENDS_ONLY_DATA_=true _R_OPTIONS_STRINGS_AS_FACTORS_=false
ALLOWED_NOTE := ^Package suggested but not available for checking: .*keras3
check: setup
	rm -rf $(BUILD) && mkdir -p $(BUILD)/src
	tar -c --exclude=./.venv --exclude=./.venv-current --exclude=./.rlib \
	  --exclude=./.git --exclude=./$(BUILD) --exclude=./build --exclude=./docs \
	  . | tar -x -C $(BUILD)/src
	cd $(BUILD) && R_LIBS=$(RLIB) R CMD build src
	cd $(BUILD) && $(AS_CRAN_OFFLINE) R_LIBS=$(RLIB) \
	  R CMD check --no-manual --no-tests --no-vignettes adafactor_*.tar.gz
	@! grep -E '^Status: .*(WARNING|ERROR)' $(BUILD)/adafactor.Rcheck/00check.log
	@notes=$$(awk '/\.\.\. NOTE$$/ {n = 1; next} /^\* / {n = 0} n' \
	  $(BUILD)/adafactor.Rcheck/00check.log | grep -vE '$(ALLOWED_NOTE)' || true); \
	  if [ -n "$$notes" ]; then echo "R CMD check NOTE: $$notes"; exit 1; fi

coverage: setup
	$(R) -e 'print(covr::package_coverage())'

# Two jobs at once, one per core. make starts the goals in the order given
# as cores come free, so the longest go first (TensorFlow's suite and the
# newest releases') and the short ones fill in behind: both cores stay busy
# to the end.
CHECKS := test-tensorflow test-current test-jax check coverage site-check \
	test-torch
test: lint
	$(MAKE) -j2 --output-sync=target $(CHECKS)
