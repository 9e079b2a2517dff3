# Two commands for a fresh machine (see README):  `make book`  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# parallel workers: one per core (CI's machine has 2)
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
# MathJax served by the site itself (offline-capable); skipped with a note where npm is missing
MATHJAX := $(VENV)/mathjax/node_modules/mathjax/es5
# nbval workers each get one CPU thread: two 2-thread trainings on 2 cores run 4-9x slower.
NB_ENV  := BOOK_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 BOOK_STRICT=1 MPLBACKEND=module://matplotlib_inline.backend_inline

.PHONY: book test lint unit notebooks chapters student colab colab-base build build-site site lab clean distclean

# torch for CPU machines: PyTorch's CPU wheel index when it answers (the default index's Linux torch is
# a CUDA build of several GB); otherwise the default index (or a local wheel your pip is configured with).
TORCH           ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# `make ... PY=python3.12` with a .venv of another Python rebuilds it (said, not silent); without PY
# the existing .venv is used whatever its Python. A .venv without a working pip (interrupted creation)
# is rebuilt. To start over by hand: `make distclean` (or rm -rf .venv _build).
PY_GIVEN := $(filter command line environment,$(origin PY))
PYVER    = import sys; print("%d.%d" % sys.version_info[:2])
ifneq ($(wildcard $(BIN)/python),)
  ifneq ($(PY_GIVEN),)
    ifneq ($(shell $(BIN)/python -c '$(PYVER)' 2>&1),$(shell $(PY) -c '$(PYVER)' 2>&1))
      REBUILD := is not a venv of $(PY)
    endif
  endif
  ifeq ($(REBUILD),)
    ifneq ($(shell $(BIN)/python -m pip --version >/dev/null 2>&1 && echo ok),ok)
      REBUILD := has no working pip (an interrupted creation?)
    endif
  endif
  ifneq ($(REBUILD),)
    $(info $(VENV) $(REBUILD): rebuilding it)
    $(shell rm -rf $(VENV))
  endif
endif

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, unless a torch (e.g. a CUDA build you installed) is already there
	@$(BIN)/python -c "import torch" 2>/dev/null || { \
	  if $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=10)" 2>/dev/null; \
	  then echo "installing $(TORCH) (CPU build, $(TORCH_CPU_INDEX))"; \
	       $(BIN)/python -m pip install -q "$(TORCH)" --extra-index-url $(TORCH_CPU_INDEX); \
	  else echo "$(TORCH_CPU_INDEX) does not answer: installing $(TORCH) from the default index"; \
	       $(BIN)/python -m pip install -q "$(TORCH)"; fi; }
	$(BIN)/python -m pip install -q -r requirements.txt -e .
	touch $@

## make book: install (once), execute every chapter and build the HTML site
book: $(STAMP) build
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# chapters run $(JOBS) at a time into the build's jupyter-cache first (myst-nb alone runs them one by one)
# (after `make colab`, chapters it ran with the same book/ are reused instead of executed again)
build: $(STAMP) $(MATHJAX)
	BOOK_STRICT=1 $(BIN)/python tools/prefill_cache.py -j $(JOBS) --executed _build/colab/executed
	BOOK_MATHJAX_DIR=$(CURDIR)/$(MATHJAX) BOOK_STRICT=1 $(BIN)/jupyter-book build . -W -n --keep-going

$(MATHJAX):
	mkdir -p $(VENV)/mathjax
	npm install --silent --no-audit --no-fund --prefix $(VENV)/mathjax "mathjax@^3.2" \
	  || echo "npm is not available: the site will load MathJax from its CDN"

## make test: unit tests, every chapter in a Colab-like environment, student versions, the -W build, the site
# (`make notebooks`, every chapter under nbval in this venv, is left out: the build executes every chapter
# in this venv with BOOK_STRICT=1 anyway, and `make colab` does so under Colab's package versions)
# (the text-only -W build of the unit tests is left out there: `make build` checks the same text, executed)
# Side by side where one job leaves a core idle: the install beside the Colab-like base venv (two pips), the
# unit tests beside the build and then the site test (Sphinx keeps one core busy).
test: UNIT_SKIP = --deselect tests/unit/test_notebooks.py::test_site_text_builds_without_warnings
# Each step's start time goes to the log (docs/benchmarks.md records the steps' seconds).
STEP = @date +"[make test] %T $(1)"
test:
	$(call STEP,install beside the Colab base venv)
	$(MAKE) --no-print-directory -j2 --output-sync=target $(STAMP) colab-base
	$(call STEP,lint and chapters)
	$(MAKE) --no-print-directory lint chapters
	$(call STEP,unit tests beside the build and the site test)
	$(MAKE) --no-print-directory -j2 --output-sync=target unit build-site UNIT_SKIP="$(UNIT_SKIP)"
	$(call STEP,done)

# the build, then the browser test of the site it built
build-site:
	$(MAKE) --no-print-directory build
	$(MAKE) --no-print-directory site

# the Colab-like base venv of tests/colab; needs only $(PY) and the torch version (`make chapters` builds it
# otherwise, or rebuilds it if the venv's torch is another one)
TORCH_VERSION = $(patsubst torch==%,%,$(filter torch==%,$(TORCH)))
colab-base:
ifneq ($(TORCH_VERSION),)
	BOOK_COLAB_TORCH=$(TORCH_VERSION) $(PY) tests/colab/colab_env.py base
endif

## make lint: ruff over book/, tools/ and tests/ (configuration in pyproject.toml), and the package's layers
lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/python tools/import_graph.py

unit: $(STAMP)
	OMP_NUM_THREADS=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q -n $(JOBS) tests \
	  --ignore=tests/student --ignore=tests/colab --ignore=tests/site $(UNIT_SKIP)

notebooks: $(STAMP)
	$(NB_ENV) $(BIN)/python -m pytest -q --nbval-lax -n $(JOBS) --dist loadscope -p no:cacheprovider chapters

## make chapters: `make colab` and `make student` in one pytest session (what `make test` runs): two
# workers stay busy to the end, longest chapters first (tests/conftest.py); each chapter executes twice
chapters: $(STAMP)
	$(BIN)/python tests/colab/colab_env.py build
	$(NB_ENV) $(BIN)/python -m pytest -q -n $(JOBS) -p no:cacheprovider tests/colab tests/student

# every chapter's student version fails exactly at its check cells (see book/teach), run as the dry run
# of the gpu profile (BOOK_DRYRUN: gpu shapes and sizes, few steps), so gpu configuration errors fail here
student: $(STAMP)
	$(NB_ENV) $(BIN)/python -m pytest -q -n $(JOBS) -p no:cacheprovider tests/student

# every chapter "in Colab": alone in an empty folder, in a venv with Colab's published package versions
# (tests/colab/colab-runtime-*.txt), its own first cell installing the book without changing any of them.
# Colab's exact Python and torch: BOOK_COLAB_PYTHON=/path/to/python3.13 BOOK_COLAB_TORCH=2.11.0 make colab
colab: $(STAMP)
	$(BIN)/python tests/colab/colab_env.py build
	$(BIN)/python -m pytest -q -n $(JOBS) -p no:cacheprovider tests/colab

# the built site in headless Chromium ($(JOBS) browsers): 404s, MathJax, widget cells, Colab links, search;
# screenshots
site: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) -p no:cacheprovider tests/site

lab: $(STAMP)
	$(BIN)/python -m pip install -q jupyterlab && $(BIN)/jupyter lab chapters

clean:
	rm -rf _build

## make distclean: also the venv (start over; the next make reinstalls everything)
distclean: clean
	rm -rf $(VENV) *.egg-info
