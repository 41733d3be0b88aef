# ckpt — two set-up-free entry points: `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
DEPS := libzip-dev libopenblas-dev pkg-config zlib1g-dev libturbojpeg0-dev libpng-dev
CKPT := .build/release/ckpt
DEMO := /tmp/ckpt-demo
FUZZ_SECONDS ?= 60

.PHONY: deps build demo test bench fuzz fuzz-build clean

# Installs the system libraries when pkg-config cannot find them (needs root or sudo).
deps:
	@if ! pkg-config --exists libzip openblas zlib libturbojpeg libpng 2>/dev/null; then \
		echo "installing $(DEPS)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEPS) >/dev/null; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "swift is not installed (https://www.swift.org/install)"; exit 1; }

build: deps
	$(SWIFT) build -c release --product ckpt --static-swift-stdlib

# The main job, a real transfer-learning run on scikit-learn's digit scans (shipped in fixtures/finetune):
# a smallcnn torch trained on digits 0-4 is inspected, transplanted to a new 5-class head (with its
# activation proof), fine-tuned on digits 5-9 from 10 labelled scans per digit (feature extraction,
# then two-stage), compared with the same network trained from scratch for the
# same steps, and used to predict. Then the seed's vgg19_bn -> SegNet graft, a label-set transplant, and short runs of
# inspect, convert, diff, scan and forward (checked against torch's output).
DIGITS := fixtures/finetune/digits_demo
TRAIN_DIGITS := --data $(DIGITS) --num-classes 5 --batch 10 --lr 0.01 --no-augment
demo: build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "== ckpt inspect fixtures/finetune/smallcnn_digits04.pth   (a smallcnn torch trained on digits 0-4: 10-class head)"
	@$(CKPT) inspect fixtures/finetune/smallcnn_digits04.pth | head -16
	@echo; echo "== ckpt transplant smallcnn_digits04.pth --into smallcnn --num-classes 5   (a new head for digits 5-9; the body proved)"
	@$(CKPT) transplant fixtures/finetune/smallcnn_digits04.pth --into smallcnn --num-classes 5 -o $(DEMO)/digits_start.pth
	@echo; echo "== ckpt finetune --mode feature-extract   (10 scans per digit; the body frozen, its outputs computed once)"
	@set -o pipefail; $(CKPT) finetune smallcnn --weights $(DEMO)/digits_start.pth $(TRAIN_DIGITS) --mode feature-extract --epochs 10 \
		-o $(DEMO)/digits_fe.pth | tee $(DEMO)/fe.log
	@echo; echo "== ckpt finetune --mode two-stage   (the head for 3 epochs, then everything at lr x 0.3; 20 epochs)"
	@set -o pipefail; $(CKPT) finetune smallcnn --weights $(DEMO)/digits_start.pth $(TRAIN_DIGITS) --mode two-stage --stage1-epochs 3 \
		--unfreeze-lr-factor 0.3 --epochs 20 -o $(DEMO)/digits_two_stage.pth | tee $(DEMO)/two_stage.log
	@echo; echo "== the same network from scratch for the same 20 epochs (ckpt init, ckpt finetune --mode finetune)"
	@$(CKPT) init smallcnn --num-classes 5 -o $(DEMO)/digits_scratch_init.pth
	@set -o pipefail; $(CKPT) finetune smallcnn --weights $(DEMO)/digits_scratch_init.pth $(TRAIN_DIGITS) --mode finetune --epochs 20 \
		-o $(DEMO)/digits_scratch.pth | tail -3 | tee $(DEMO)/scratch.log
	@echo; echo "== validation accuracy on 150 scans of digits 5-9 (best epoch)"
	@printf '  transfer, feature extraction:  %s\n' "$$(grep -o 'val accuracy [0-9.]*%' $(DEMO)/fe.log | tail -1 | cut -d' ' -f3)"
	@printf '  transfer, two-stage:           %s\n' "$$(grep -o 'val accuracy [0-9.]*%' $(DEMO)/two_stage.log | tail -1 | cut -d' ' -f3)"
	@printf '  from scratch, same 20 epochs:  %s\n' "$$(grep -o 'val accuracy [0-9.]*%' $(DEMO)/scratch.log | tail -1 | cut -d' ' -f3)"
	@echo; echo "== ckpt predict with the two-stage model on a few validation scans (top 3; class names from the data folder)"
	@$(CKPT) predict smallcnn --weights $(DEMO)/digits_two_stage.pth --image $(DIGITS)/val/5/$$(ls $(DIGITS)/val/5 | head -1) \
		$(DIGITS)/val/7/$$(ls $(DIGITS)/val/7 | head -1) $(DIGITS)/val/9/$$(ls $(DIGITS)/val/9 | head -1) --classes-from $(DIGITS) --top 3
	@echo; echo "== ckpt transplant: a float16 DataParallel smallcnn checkpoint to 5 classes, keeping the rows of cat, dog, horse, bird"
	@$(CKPT) transplant fixtures/demo/smallcnn_checkpoint.pth --into smallcnn \
		--keep-classes fixtures/demo/cifar10_classes.txt fixtures/demo/pets_classes.txt --dtype float32 -o $(DEMO)/pets.pth
	@echo; echo "== ckpt init vgg19_bn   (575 MB of freshly initialised weights: the source of the next graft)"
	@$(CKPT) init vgg19_bn -o $(DEMO)/vgg19_bn.pth
	@echo; echo "== ckpt transplant vgg19_bn.pth --into segnet --map 3:7=enc1   (the seed's SegNet: its recipe fills enc2..enc5)"
	@$(CKPT) transplant $(DEMO)/vgg19_bn.pth --into segnet --map 3:7=enc1 --require-coverage enc=100% -o $(DEMO)/segnet.pth
	@rm -f $(DEMO)/vgg19_bn.pth
	@echo; echo "== ckpt inspect fixtures/valid/checkpoint.pth   (a nested training checkpoint)"
	@$(CKPT) inspect fixtures/valid/checkpoint.pth | head -20
	@echo; echo "== ckpt inspect --tree fixtures/valid/legacy_cnn.pth   (torch 1.5 legacy format)"
	@$(CKPT) inspect --tree fixtures/valid/legacy_cnn.pth | sed -n '1,20p'
	@echo; echo "== ckpt convert fixtures/valid/cnn.pth $(DEMO)/cnn.safetensors"
	@$(CKPT) convert fixtures/valid/cnn.pth $(DEMO)/cnn.safetensors
	@echo; echo "== ckpt convert $(DEMO)/cnn.safetensors $(DEMO)/cnn16.pth --dtype float16"
	@$(CKPT) convert $(DEMO)/cnn.safetensors $(DEMO)/cnn16.pth --dtype float16
	@echo; echo "== ckpt diff fixtures/valid/cnn.pth $(DEMO)/cnn.safetensors   (exit 0: equal)"
	@$(CKPT) diff fixtures/valid/cnn.pth $(DEMO)/cnn.safetensors
	@echo; echo "== ckpt diff fixtures/valid/cnn.pth $(DEMO)/cnn16.pth   (exit 1: fp16 rounding)"
	@$(CKPT) diff fixtures/valid/cnn.pth $(DEMO)/cnn16.pth | tail -4 || true
	@echo; echo "== ckpt scan: a clean file, a pickled module, a hostile file"
	@$(CKPT) scan fixtures/valid/cnn.pth fixtures/valid/full_model.pth fixtures/hostile/files/os_system_reduce.pth || true
	@echo; echo "== ckpt inspect on a hostile file (refused, nothing runs)"
	@$(CKPT) inspect fixtures/hostile/files/os_system_reduce.pth || true
	@echo; echo "== ckpt zoo   (the models ckpt builds)"
	@$(CKPT) zoo
	@echo; echo "== ckpt summary smallcnn"
	@$(CKPT) summary smallcnn
	@echo; echo "== ckpt forward smallcnn on a float16 DataParallel training checkpoint"
	@$(CKPT) forward smallcnn --weights fixtures/demo/smallcnn_checkpoint.pth --input fixtures/demo/smallcnn_input.pth -o $(DEMO)/y.pth
	@echo; echo "== ckpt diff $(DEMO)/y.pth fixtures/demo/smallcnn_torch_y.pth --atol 1e-5   (torch's output: equal)"
	@$(CKPT) diff $(DEMO)/y.pth fixtures/demo/smallcnn_torch_y.pth --atol 1e-5

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

bench: build
	python3 bench/bench_io.py --ckpt $(CKPT)
	python3 bench/bench_forward.py --ckpt $(CKPT)
	python3 bench/bench_transplant.py --ckpt $(CKPT)
	python3 bench/bench_train.py --ckpt $(CKPT)
	python3 bench/bench_data.py --ckpt $(CKPT)
	python3 bench/bench_finetune.py --ckpt $(CKPT) --whole-epoch
	python3 bench/bench_cast.py --ckpt $(CKPT)
	python3 bench/bench_scale.py --ckpt $(CKPT)

# libFuzzer over the readers (Swift's -sanitize=fuzzer,address), seeded by the committed corpus.
fuzz-build: deps
	$(SWIFT) build -c debug --product ckpt-fuzz --scratch-path .build-fuzz \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DCKPT_FUZZ

fuzz: fuzz-build
	mkdir -p /tmp/ckpt-fuzz-new
	.build-fuzz/debug/ckpt-fuzz -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=30 \
		/tmp/ckpt-fuzz-new fuzz/corpus

clean:
	rm -rf .build .build-fuzz $(DEMO)
