# `make demo` runs the main job end to end; `make test` runs the tests.
# Both create .venv and install the package (and its test extras) first.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup test demo bench bench-quick overhead clean

$(STAMP): setup.py
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,plots]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m examples.demo

overhead: setup
	$(PY) -m benchmarks.overhead

clean:
	rm -rf .venv runs build *.egg-info
