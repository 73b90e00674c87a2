# The README's commands. Each target does its own set-up on a fresh clone and is idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.posekit-installed
SYNTH_DIR := data/synthetic

.PHONY: venv demo test soak lint format bench bench-quick bench-detector gpu-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch is pinned here: the CPU build of 2.13.0 lies on this disk; an open range pulls CUDA.
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

RUN_DIR := runs/synthetic

$(SYNTH_DIR)/synthetic.json: | $(STAMP)
	$(BIN)/posekit synth --out $(SYNTH_DIR) --images 2000 --val 200 --size 256x256 --seed 0

demo: venv $(SYNTH_DIR)/synthetic.json
	$(BIN)/posekit check-data --labels $(SYNTH_DIR)/train.json --images $(SYNTH_DIR)/train
	$(BIN)/posekit check-data --labels $(SYNTH_DIR)/val.json --images $(SYNTH_DIR)/val
	$(BIN)/posekit train --config configs/lw_openpose/synthetic.yaml --exist-ok
	$(BIN)/posekit val --weights $(RUN_DIR)/checkpoints/best.pth
	$(BIN)/posekit predict $(SYNTH_DIR)/val --weights $(RUN_DIR)/checkpoints/best.pth \
		--out $(RUN_DIR)/predictions
	@echo "demo done: see $(RUN_DIR)/results.csv, $(RUN_DIR)/plots/ and $(RUN_DIR)/predictions/"

test: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest -q

BENCH := $(BIN)/python benchmarks

bench: venv
	$(BENCH)/bench_coco_load.py
	$(BENCH)/bench_synthetic.py
	$(BENCH)/bench_targets.py
	$(BENCH)/bench_data.py
	$(BENCH)/bench_decode.py
	$(BENCH)/bench_eval.py
	$(BENCH)/bench_train_step.py
	$(BENCH)/bench_end_to_end.py
	$(BENCH)/bench_inference.py

# the reliability suite, longer: 100 kill -9 in one training run (make test does 20)
soak: $(STAMP)
	POSEKIT_SOAK_KILLS=100 $(BIN)/pytest -q tests/reliability/test_kill.py -k kills

# the detector must-show: 30 minutes of training with its learning curve (not in make bench)
bench-detector: venv
	$(BENCH)/bench_detector.py --budget-min 30

# on a GPU machine: every family with fp16 AMP, loss falls, exact resume, img/s; NCCL with 2 GPUs
gpu-check: venv
	$(BENCH)/gpu_check.py

bench-quick: venv
	$(BENCH)/bench_synthetic.py
	$(BENCH)/bench_targets.py --repeats 50
	$(BENCH)/bench_data.py --samples 100 --runs 1
	$(BENCH)/bench_decode.py --runs 20
	$(BENCH)/bench_train_step.py --stages 1 --steps 3 --warmup 1
	$(BENCH)/bench_end_to_end.py --batches 15
	$(BENCH)/bench_inference.py --frames 10

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: venv
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs $(SYNTH_DIR) .pytest_cache .ruff_cache
