# One command each (set-up included): `make book` builds the HTML book, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv/bin
# Progress bars are for people; executed notebooks and nbval runs store none.
export TQDM_DISABLE := 1
export PYTHONHASHSEED := 0
# One BLAS/OpenMP thread per process: tests and notebooks run two at a time on two cores, and
# oversubscribed thread pools make small linear algebra (e.g. scikit-learn's EM) 20x slower.
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
JOBS ?= 2

.PHONY: setup book test unit nbval build-strict notebooks student grade clean

# Set-up runs again only when its inputs change.
setup: .venv/.setup-done _static/mathjax/tex-svg-full.js

_static/mathjax/tex-svg-full.js: | .venv/.setup-done
	$(VENV)/python scripts/fetch_mathjax.py

.venv/.setup-done: requirements.txt pyproject.toml scripts/setup.sh scripts/fetch_mathjax.py
	bash scripts/setup.sh
	touch $@

book: setup
	$(VENV)/jupyter-book build . --builder html
	@echo "Book: _build/html/index.html"

test: setup unit nbval build-strict

unit:
	$(VENV)/python -m pytest tests -n $(JOBS) -q

# Re-executes every committed notebook and compares it with its stored outputs.
nbval:
	$(VENV)/python -m pytest --nbval --nbval-sanitize-with nbval_sanitize.cfg --nbval-cell-timeout 600 \
	  -p no:randomly -n $(JOBS) --dist loadscope -q chapters solutions --ignore-glob='chapters/*/exercises.ipynb'

# The book build with warnings as errors: broken references, citations or figures fail.
build-strict:
	rm -rf _build/html
	$(VENV)/jupyter-book build . --builder html -W -n --keep-going

# Re-execute notebooks in place (after changing code), then regenerate student versions.
notebooks: setup
	$(VENV)/python scripts/execute_notebooks.py $(NB)
	$(VENV)/python -m iai_core.assign student solutions chapters

student: setup
	$(VENV)/python -m iai_core.assign student solutions chapters

# make grade SUBMISSIONS=folder OUT=grades.csv [GRADE_ARGS="--jobs 8 --timeout 300 --memory 4"]
# writes OUT and, beside it, the gradebook CSV, the summary and the histogram (see README, For instructors)
grade: setup
	$(VENV)/python -m iai_core.assign grade $(SUBMISSIONS) --out $(OUT) $(GRADE_ARGS)

clean:
	rm -rf _build
