# shardlab: `make demo` runs the main job on the embedded default; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# A build folder outside the clone, so fresh clones on one machine reuse the compiled dependencies.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/shardlab-target
ENGINE_BIN := $(CARGO_TARGET_DIR)/debug/engine
DRIVER_BIN := $(CARGO_TARGET_DIR)/debug/driver
SMOLLM2 := models/smollm2-135m-instruct

.PHONY: help setup build model demo generate test test-quick lint fmt bench bench-parallel bench-layouts \
	bench-serve slurm-up slurm-down slurm-status slurm-selftest prompts prompts-check baseline \
	check-cuda device-bundle device-check bench-fused

help:
	@echo "make demo        install what is needed, fetch SmolLM2, run the main job (driver run on the embedded default; ALL=1: all 20 prompt IDs)"
	@echo "make generate    one chat answer from SmolLM2 with the engine alone"
	@echo "make test        install what is needed and run every test"
	@echo "make test-quick  unit tests only (no models, no services)"
	@echo "make lint        cargo fmt --check and clippy -D warnings"
	@echo "make model       fetch and import the demo model and the Llama 3 tokenizer"
	@echo "make prompts     rebuild data/prompts_{2k,4k}.txt and data/answers.json (seeded), then check them"
	@echo "make prompts-check  check the prompt sets (count, IDs, token budgets)"
	@echo "make baseline    the baseline on the embedded default (configs/demo.toml; release engine)"
	@echo "make bench       single-rank speed against candle-transformers (one thread)"
	@echo "make bench-parallel  pp=2 and tp=2 throughput against one rank (MPI, one thread per rank)"
	@echo "make bench-layouts   column- vs row-parallel slices and all-reduce cost at 70B MLP shapes / 4"
	@echo "make bench-fused     the fused element-wise kernels against candle's unfused ops (SmolLM2 and 70B tp=8 widths)"
	@echo "make bench-serve     engine serve under load: 32 requests at concurrency 1, 4, 16 (SmolLM2)"
	@echo "make check-cuda  the cuda build without a GPU: CUDA 13 from PyPI wheels, clippy and a stripped release engine (dist/device/engine), the device check's dry run"
	@echo "make device-check  scripts/device-check.sh on a GPU machine (dist/device/engine carried there)"
	@echo "make slurm-up     a real local Slurm: 2 fake nodes x 2 fake GPUs, slurmdbd (slurm-down, slurm-status, slurm-selftest)"

setup:
	@bash scripts/setup.sh

build: setup
	cargo build --workspace --bins

model: build
	ENGINE_BIN=$(ENGINE_BIN) bash scripts/fetch-models.sh

# The main job on the embedded default: baseline (engine serve), the four strategies (local
# launcher, mpirun), scoring and the report, on SmolLM2 with the optimised engine. One prompt ID
# by default (configs/demo.toml); `make demo ALL=1` runs all 20.
demo: model
	cargo build --release -p shardlab-engine --bin engine
	ENGINE_BIN=$(CARGO_TARGET_DIR)/release/engine $(DRIVER_BIN) run --config configs/demo.toml $(if $(ALL),--all)

# One chat answer from SmolLM2 (the engine alone).
generate: model
	$(ENGINE_BIN) generate --model $(SMOLLM2) --chat --max-new-tokens 64 "What is 2+2?"

prompts: model
	$(DRIVER_BIN) prompts build
	$(DRIVER_BIN) prompts check

prompts-check: model
	$(DRIVER_BIN) prompts check

# The embedded baseline serves SmolLM2 with the optimised engine: the debug one is several times slower.
baseline: model
	cargo build --release -p shardlab-engine --bin engine
	ENGINE_BIN=$(CARGO_TARGET_DIR)/release/engine $(DRIVER_BIN) baseline --config configs/demo.toml

# The driver's Slurm tests need the local Slurm (slurm/local/, as root): brought up here.
test: model slurm-up
	cargo test --workspace --no-fail-fast

test-quick:
	cargo test --workspace --lib --bins

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench: model
	RAYON_NUM_THREADS=$${RAYON_NUM_THREADS:-1} cargo bench -p shardlab-benches --bench single_rank

bench-parallel: model
	cargo build --release -p shardlab-engine --bin engine
	cargo bench -p shardlab-benches --bench parallel

bench-layouts:
	RAYON_NUM_THREADS=$${RAYON_NUM_THREADS:-1} cargo bench -p shardlab-benches --bench shard_layouts

bench-fused:
	RAYON_NUM_THREADS=$${RAYON_NUM_THREADS:-1} cargo bench -p shardlab-benches --bench fused_ops

bench-serve: model
	cargo build --release -p shardlab-engine --bin engine
	cargo bench -p shardlab-benches --bench serve_load

# A real local Slurm (2 fake nodes x 2 fake GPUs, slurmdbd, MPI through srun --mpi=pmix): slurm/local/.
slurm-up:
	bash slurm/local/cluster.sh up

slurm-down:
	bash slurm/local/cluster.sh down

slurm-status:
	bash slurm/local/cluster.sh status

slurm-selftest: build
	ENGINE_BIN=$(ENGINE_BIN) bash slurm/local/selftest.sh

# The GPU build, on any machine: a CUDA 13 toolchain from PyPI wheels (scripts/cuda-toolchain.sh),
# its own build folder (the features differ), one compute capability (H100/H200: 90), release
# profile for both the lint and the build so candle's CUDA kernels are compiled once.
CUDA_TARGET_DIR ?= $(HOME)/.cache/shardlab-target-cuda
CUDA_FEATURES := shardlab-engine/cuda,shardlab-kernels/cuda
DEVICE_BIN := dist/device/engine
DEVICE_BIN_MAX_MB := 60

check-cuda: setup
	eval "$$(bash scripts/cuda-toolchain.sh)" && export CARGO_TARGET_DIR=$(CUDA_TARGET_DIR) && \
	  cargo clippy --release -p shardlab-engine -p shardlab-kernels --features $(CUDA_FEATURES) --all-targets -- -D warnings
	$(MAKE) device-bundle
	bash scripts/device-check.sh --dry-run --bin $(DEVICE_BIN)

# The engine for scripts/device-check.sh: release, cuda, linked here against the wheels' libraries
# and the stub libcuda, stripped; it runs against a PyTorch install's CUDA 13 libraries.
device-bundle: setup
	eval "$$(bash scripts/cuda-toolchain.sh)" && export CARGO_TARGET_DIR=$(CUDA_TARGET_DIR) && \
	  cargo build --release -p shardlab-engine --features cuda --bin engine
	mkdir -p $(dir $(DEVICE_BIN))
	strip -o $(DEVICE_BIN).tmp $(CUDA_TARGET_DIR)/release/engine && mv $(DEVICE_BIN).tmp $(DEVICE_BIN)
	@size=$$(( $$(stat -c %s $(DEVICE_BIN)) / 1048576 )); \
	  echo "$(DEVICE_BIN): $$size MB"; \
	  [ $$size -lt $(DEVICE_BIN_MAX_MB) ] || { echo "$(DEVICE_BIN) is over $(DEVICE_BIN_MAX_MB) MB" >&2; exit 1; }

device-check:
	bash scripts/device-check.sh
