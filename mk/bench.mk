# Benchmarks; each writes its table to bench/results/. Extra arguments go in BENCH_ARGS,
# e.g. `make bench-long-video BENCH_ARGS="--device cuda --height 768 --width 512 --steps 30"`.
BENCH_ARGS ?=
LONG_VIDEO_ARGS ?= --device cpu --height 64 --width 64 --steps 2

.PHONY: bench-long-video bench-temporal

## bench-long-video  peak RSS of a 10 s vs a 60 s render (tiny model, CPU): must stay within 1.3x
bench-long-video: $(STAMP)
	$(PY) bench/long_video_memory.py $(LONG_VIDEO_ARGS) $(BENCH_ARGS)

## bench-temporal    UNet forward memory and time by frame count, temporal transformer vs Mamba
bench-temporal: $(STAMP)
	$(PY) -m bench.temporal_memory $(BENCH_ARGS)
