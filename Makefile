# Two commands for a fresh machine (see README):  `make book`  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
JOBS    ?= 2
# MathJax served by the site itself (offline-capable); skipped with a note where npm is missing
MATHJAX := $(VENV)/mathjax/node_modules/mathjax/es5
# nbval workers each get one CPU thread: two 2-thread trainings on 2 cores run 4-9x slower.
NB_ENV  := BOOK_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 BOOK_STRICT=1 MPLBACKEND=module://matplotlib_inline.backend_inline

.PHONY: book test unit notebooks student colab build site lab clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the CPU build 2.13.0 unless a torch (e.g. a CUDA build you installed) is already there
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -r requirements.txt -e .
	touch $@

## make book: install (once), execute every chapter and build the HTML site
book: $(STAMP) build
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# chapters run $(JOBS) at a time into the build's jupyter-cache first (myst-nb alone runs them one by one)
build: $(STAMP) $(MATHJAX)
	BOOK_STRICT=1 $(BIN)/python tools/prefill_cache.py -j $(JOBS)
	BOOK_MATHJAX_DIR=$(CURDIR)/$(MATHJAX) BOOK_STRICT=1 $(BIN)/jupyter-book build . -W -n --keep-going

$(MATHJAX):
	mkdir -p $(VENV)/mathjax
	npm install --silent --no-audit --no-fund --prefix $(VENV)/mathjax "mathjax@^3.2" \
	  || echo "npm is not available: the site will load MathJax from its CDN"

## make test: unit tests, every chapter under nbval, student versions, the Colab path, the -W build, the site
test: unit notebooks student colab build site

unit: $(STAMP)
	OMP_NUM_THREADS=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q -n $(JOBS) tests \
	  --ignore=tests/student --ignore=tests/colab --ignore=tests/site

notebooks: $(STAMP)
	$(NB_ENV) $(BIN)/python -m pytest -q --nbval-lax -n $(JOBS) --dist loadscope -p no:cacheprovider chapters

# every chapter's student version fails exactly at its check cells (see book/teach.py)
student: $(STAMP)
	$(NB_ENV) $(BIN)/python -m pytest -q -n $(JOBS) -p no:cacheprovider tests/student

# a chapter opened "in Colab": alone in an empty folder, fresh venv with torch, its first cell installs the book
colab: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/colab

# the built site in headless Chromium: 404s, MathJax, widget cells, Colab links, search; screenshots
site: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/site

lab: $(STAMP)
	$(BIN)/python -m pip install -q jupyterlab && $(BIN)/jupyter lab chapters

clean:
	rm -rf _build
