/// What trains in a fine-tuning run, as the transfer-learning tutorials name the recipes.
public enum FineTuneMode: String, Sendable, CaseIterable {
    /// Only the layers the fit re-initialised (a new head) train; with none re-initialised, the
    /// model's head. The tutorials' "ConvNet as a fixed feature extractor".
    case featureExtract = "feature-extract"
    /// Everything trains at the learning rate (or what `--train` / `--freeze` leave).
    case finetune
    /// The head alone for `stage1Epochs`, then everything at `learningRate × unfreezeFactor`.
    case twoStage = "two-stage"
}

/// The optimizer a run trains with.
public enum OptimizerKind: String, Sendable, CaseIterable {
    /// `torch.optim.SGD` with momentum (the tutorials' choice).
    case sgd
    /// `torch.optim.AdamW`.
    case adamw
}

/// The learning-rate schedule of a stage, stepped once per epoch.
public enum ScheduleKind: String, Sendable, CaseIterable {
    /// A constant rate (after the warm-up, if any).
    case none
    /// `StepLR(step_size, gamma)`.
    case step
    /// `CosineAnnealingLR(T_max = epochs of the stage − warm-up)`.
    case cosine
}

/// Every setting of a fine-tuning run: what trains, how, on which data.
/// PyTorch counterpart: the hyper-parameters at the top of a transfer-learning script.
public struct FineTuneOptions: Sendable {
    /// What trains (see `FineTuneMode`).
    public var mode: FineTuneMode = .finetune
    /// Module paths or keys that train (`--train classifier.0,classifier.3`); the rest is frozen.
    public var train: [String] = []
    /// Module paths or keys that stay frozen (`--freeze layer1,layer2`).
    public var freeze: [String] = []
    /// The first N modules with parameters (in `named_modules()` order) stay frozen.
    public var freezeFirst = 0
    /// Learning rates of their own for the parameters under these names (`--group-lr
    /// features=1e-4,classifier=1e-2`), each a parameter group of the optimizer in this order; the
    /// other trainable parameters form a last group at `learningRate`. A second stage scales
    /// every group's rate by `unfreezeFactor`.
    public var groupLearningRates: [(name: String, learningRate: Double)] = []
    /// The optimizer.
    public var optimizer: OptimizerKind = .sgd
    /// The learning rate of the first stage (`lr`).
    public var learningRate = 0.001
    /// SGD's momentum (ignored by AdamW).
    public var momentum = 0.9
    /// Weight decay; nil is 0 for SGD and torch's 0.01 for AdamW.
    public var weightDecay: Double?
    /// Epochs in all (both stages of `two-stage`).
    public var epochs = 5
    /// Images per batch.
    public var batchSize = 32
    /// The schedule of each stage.
    public var schedule: ScheduleKind = .none
    /// Epochs of linear warm-up (`LinearLR(start_factor=0.1)`) at the start of each stage.
    public var warmupEpochs = 0
    /// `StepLR`'s step size in epochs.
    public var stepSize = 7
    /// `StepLR`'s decay factor.
    public var gamma = 0.1
    /// Epochs of the head-only stage of `two-stage`.
    public var stage1Epochs = 1
    /// The second stage's learning rate is `learningRate` times this.
    public var unfreezeFactor = 0.1
    /// Side of the images fed to the model; nil takes the zoo's input size.
    public var imageSize: Int?
    /// Seeds the visiting order, the augmentation, the validation split and new layers.
    public var seed: UInt64 = 0
    /// Visit the training images in a seeded random order each epoch.
    public var shuffle = true
    /// Random resized crops and flips; false trains on `Resize(S)` + `CenterCrop(S)`.
    public var augment = true
    /// For a dataset without a validation folder, the share of each class held out.
    public var validationFraction: Double?
    /// Leave unreadable images out of their batch (reported) instead of stopping.
    public var skipBadImages = false
    /// Threads decoding images ahead of the model.
    public var workers = 1
    /// Segmentation: the mask value left out of the loss and the metrics (`ignore_index`); nil
    /// leaves nothing out (torch's -100 never occurs in a mask).
    public var ignoreIndex: Int?
    /// Segmentation with several inputs: the RGB plane (0 red, 1 green, 2 blue) each input gets,
    /// normalised as a grey image (`--inputs split`: `[0, 1]`); nil feeds the grey image to every input.
    public var inputPlanes: [Int]?
    /// Segmentation with two inputs (`--inputs pair`): x1 from `images/`, x2 from the file of the
    /// same name under `images2/`, each converted to grey, both cropped and flipped alike (they
    /// travel as planes 0 and 1 of one image, so `inputPlanes` is `[0, 1]`).
    public var pairedInputs = false
    /// Before training, check every loaded tensor against its source.
    public var verify = true
    /// Without augmentation, when only a head trains (feature extraction, a two-stage run's
    /// first stage), run the frozen network once per image and train the head on its outputs.
    public var cacheFeatures = true
    /// The most the cached features may take (training and validation); above it every epoch
    /// runs the whole network.
    public var featureCacheBytes = 4 << 30
    /// Frozen batch norms normalise with the batch's statistics in training and update their
    /// running ones, as torch does for `requires_grad=False` under `model.train()` (the seeds'
    /// recipe); off, they run in eval mode and stay as loaded. On turns feature caching off.
    public var frozenBatchNormStatistics = false

    /// The defaults: `finetune`, SGD with momentum 0.9, lr 0.001, 5 epochs, batch 32.
    public init() {}

    /// The weight decay the optimizer gets.
    public var effectiveWeightDecay: Double { weightDecay ?? (optimizer == .adamw ? 0.01 : 0) }

    /// Checks every value before anything is read.
    /// - Throws: `TrainingError.invalidOption` naming the option, what it must be and what it got.
    public func validate() throws {
        func fail(_ option: String, _ message: String) -> TrainingError { .invalidOption(option: option, message: message) }
        guard learningRate.isFinite, learningRate > 0 else { throw fail("--lr", "must be positive and finite, got \(learningRate)") }
        guard momentum.isFinite, momentum >= 0, momentum < 1 else { throw fail("--momentum", "must be in [0, 1), got \(momentum)") }
        if let wd = weightDecay, !(wd.isFinite && wd >= 0) { throw fail("--weight-decay", "must be zero or positive, got \(wd)") }
        guard epochs >= 1 else { throw fail("--epochs", "must be at least 1, got \(epochs)") }
        guard batchSize >= 1 else { throw fail("--batch", "must be at least 1, got \(batchSize)") }
        guard warmupEpochs >= 0 else { throw fail("--warmup-epochs", "must be 0 or more, got \(warmupEpochs)") }
        guard stepSize >= 1 else { throw fail("--step-size", "must be at least 1, got \(stepSize)") }
        guard gamma.isFinite, gamma > 0 else { throw fail("--gamma", "must be positive, got \(gamma)") }
        guard freezeFirst >= 0 else { throw fail("--freeze-first", "must be 0 or more, got \(freezeFirst)") }
        if let s = imageSize, !(1 ... 4096).contains(s) { throw fail("--image-size", "must be 1…4096, got \(s)") }
        if let f = validationFraction, !(f >= 0 && f < 1) { throw fail("--val-split", "must be in [0, 1), got \(f)") }
        if pairedInputs, inputPlanes != [0, 1] { throw fail("--inputs", "pair feeds planes 0 and 1 (x1, x2), got \(inputPlanes.map { "\($0)" } ?? "none")") }
        guard workers >= 0, workers <= 64 else { throw fail("--workers", "must be 0…64, got \(workers)") }
        if !train.isEmpty, !freeze.isEmpty || freezeFirst > 0 {
            throw fail("--train", "names what trains and --freeze / --freeze-first what does not; give one or the other")
        }
        for (name, rate) in groupLearningRates {
            guard !name.isEmpty else { throw fail("--group-lr", "holds an empty name (NAME=LR, comma separated)") }
            guard rate.isFinite, rate > 0 else { throw fail("--group-lr", "\(name): the learning rate must be positive and finite, got \(rate)") }
        }
        if let dup = Dictionary(grouping: groupLearningRates.map(\.name), by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw fail("--group-lr", "names \(dup) twice")
        }
        for (option, names) in [("--train", train), ("--freeze", freeze)] where names.contains(where: \.isEmpty) {
            throw fail(option, "holds an empty name (a doubled or trailing comma?)")
        }
        switch mode {
        case .featureExtract:
            if !train.isEmpty || !freeze.isEmpty || freezeFirst > 0 {
                throw fail("--mode", "feature-extract trains the new layers only; --train / --freeze / --freeze-first go with --mode finetune or two-stage")
            }
        case .twoStage:
            guard stage1Epochs >= 1, stage1Epochs < epochs else {
                throw fail("--stage1-epochs", "must be at least 1 and fewer than --epochs (\(epochs)), got \(stage1Epochs)")
            }
            guard unfreezeFactor.isFinite, unfreezeFactor > 0 else {
                throw fail("--unfreeze-lr-factor", "must be positive, got \(unfreezeFactor)")
            }
            if !train.isEmpty {
                throw fail("--train", "two-stage trains the head first and then everything; use --freeze to keep layers frozen in the second stage")
            }
        case .finetune:
            break
        }
    }

    /// The stages of the run: `(first epoch, epoch count, learning rate, head only)`.
    var stages: [Stage] {
        switch mode {
        case .featureExtract: return [Stage(index: 0, firstEpoch: 0, epochs: epochs, learningRate: learningRate, headOnly: true)]
        case .finetune: return [Stage(index: 0, firstEpoch: 0, epochs: epochs, learningRate: learningRate, headOnly: false)]
        case .twoStage:
            return [Stage(index: 0, firstEpoch: 0, epochs: stage1Epochs, learningRate: learningRate, headOnly: true),
                    Stage(index: 1, firstEpoch: stage1Epochs, epochs: epochs - stage1Epochs,
                          learningRate: learningRate * unfreezeFactor, headOnly: false)]
        }
    }

    /// The stage epoch `epoch` (from 0) belongs to.
    func stage(ofEpoch epoch: Int) -> Stage {
        stages.last { $0.firstEpoch <= epoch } ?? stages[0]
    }
}

/// One stage of a run: its epochs, its starting learning rate, and whether only the new layers train.
struct Stage: Sendable, Equatable {
    /// 0, or 1 for the second stage of `two-stage`.
    var index: Int
    /// Its first epoch, from 0.
    var firstEpoch: Int
    /// How many epochs it lasts.
    var epochs: Int
    /// The learning rate it starts at.
    var learningRate: Double
    /// True when only the new layers (or the head) train.
    var headOnly: Bool
}
