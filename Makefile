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

# The main job: transplants (a shipped smallcnn training checkpoint to a new label set; the card's
# vgg19_bn -> SegNet graft on freshly initialised weights), each with its plan and proof; fine-tuning
# a digits-0-4 smallcnn on digits 5-9 (feature extraction, then two-stage); then inspect, convert,
# diff, scan, and the model zoo with a forward pass checked against torch's output.
demo: build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "== ckpt transplant: a float16 DataParallel smallcnn checkpoint to 5 classes, keeping the rows of cat, dog, horse, bird"
	@$(CKPT) transplant fixtures/demo/smallcnn_checkpoint.pth --into smallcnn \
		--keep-classes fixtures/demo/cifar10_classes.txt fixtures/demo/pets_classes.txt --dtype float32 -o $(DEMO)/pets.pth
	@echo; echo "== ckpt init vgg19_bn   (575 MB of freshly initialised weights: the source of the next graft)"
	@$(CKPT) init vgg19_bn -o $(DEMO)/vgg19_bn.pth
	@echo; echo "== ckpt transplant vgg19_bn.pth --into segnet --map 3:7=enc1   (the seed's SegNet: its recipe fills enc2..enc5)"
	@$(CKPT) transplant $(DEMO)/vgg19_bn.pth --into segnet --map 3:7=enc1 --require-coverage enc=100% -o $(DEMO)/segnet.pth
	@echo; echo "== ckpt inspect $(DEMO)/segnet.pth | head"
	@$(CKPT) inspect $(DEMO)/segnet.pth | head -12
	@rm -f $(DEMO)/vgg19_bn.pth
	@echo; echo "== ckpt finetune smallcnn on digits 5-9 (scikit-learn's scans; a smallcnn torch trained on digits 0-4 with a new 5-class head): feature extraction"
	@$(CKPT) finetune smallcnn --weights fixtures/finetune/smallcnn_start.pth --data fixtures/finetune/digits --num-classes 5 \
		--mode feature-extract --epochs 10 --batch 4 --lr 0.01 --no-augment -o $(DEMO)/digits_fe.pth
	@echo; echo "== ckpt finetune, two-stage from there (head for 2 epochs, then everything at lr x 0.1)"
	@$(CKPT) finetune smallcnn --weights $(DEMO)/digits_fe.pth --data fixtures/finetune/digits --num-classes 5 \
		--mode two-stage --stage1-epochs 2 --epochs 10 --batch 4 --lr 0.01 --no-augment -o $(DEMO)/digits_two_stage.pth
	@echo; echo "== ckpt predict with it on the validation digits (top 3; class names from the data folder)"
	@$(CKPT) predict smallcnn --weights $(DEMO)/digits_two_stage.pth --image fixtures/finetune/digits/val \
		--classes-from fixtures/finetune/digits --top 3
	@echo
	@echo "== ckpt inspect fixtures/valid/checkpoint.pth   (a nested training checkpoint)"
	@$(CKPT) inspect fixtures/valid/checkpoint.pth | head -30
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
