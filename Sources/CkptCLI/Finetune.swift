import ArgumentParser
import CkptTrain
import Foundation

/// `ckpt finetune MODEL --weights W --data DIR --num-classes N -o OUT`: the transfer-learning
/// loop of the tutorials on an image folder, with the weights proven before the first step and a
/// state dict PyTorch loads strictly at the end.
struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a zoo classifier on an image folder, from a checkpoint, and save a state dict torch loads.",
        discussion: """
            DIR is DIR/train/<class>/* with DIR/val/<class>/* (or validation/, valid/), or one folder of class \
            folders (--val-split holds out a share of each class); classes are sorted by name and must number \
            --num-classes (at least 2); a training class folder without an image is refused, as ImageFolder refuses \
            it. For segnet, DIR holds images/ and masks/ (PNG class maps paired by name; or the two under \
            train/ and val/), and images2/ with --inputs pair. --weights is fitted to MODEL by the plan forward and transplant use; a head of another \
            class count is re-initialised as transplant does (seeded by --seed); anything else that does not fit \
            stops the command. Before training every loaded tensor is checked against its source and, when \
            W.plan.json (a transplant's plan) sits beside the weights, the transplant's activation proof is run \
            again; either failing stops the command (--no-verify skips both). What trains: --mode feature-extract \
            (only re-initialised layers, or the head), finetune (everything, or what --train / --freeze / \
            --freeze-first leave), two-stage (the head for --stage1-epochs, then everything at lr x \
            --unfreeze-lr-factor with a new optimizer). A batch norm whose parameters are frozen runs in eval mode \
            (running statistics, kept as loaded); --frozen-bn train gives it torch's behaviour under model.train() \
            with requires_grad=False (batch statistics, running ones updated), as the tutorials' loops do. Frozen \
            tensors and the statistics of eval-mode frozen batch norms are checked bit for bit after every epoch. Training: ImageFolder + DataLoader as torchvision's \
            (RandomResizedCrop + flip, or Resize + CenterCrop with --no-augment), zero_grad, forward, \
            cross-entropy, backward, step; the schedule steps once per epoch; validation in eval mode with \
            Resize(round(S*256/224)) + CenterCrop(S). Without augmentation, where only a head trains (feature extraction, \
            the first stage of two-stage), the frozen network runs once per image and the head trains on its outputs \
            (--no-cache runs the whole network every epoch). The best epoch (validation accuracy, else training loss) is \
            written to OUT (with a classifier's class names, one per line in index order, to OUT.classes.txt, which \
            predict reads beside its weights), every epoch to OUT.train.pth ({model, optimizer, scheduler, epoch}; --resume continues \
            from it), OUT.metrics.csv and OUT.curves.svg (loss and accuracy per epoch), and with --tensorboard DIR the same \
            scalars to a TensorBoard event file in DIR. A loss that is not finite stops the run, naming epoch and batch; the files \
            keep the last good epoch. Exit 0 trained, 1 stopped (a proof, a source check, a non-finite loss, a \
            frozen tensor that moved), 2 a file that cannot be used, 64 a bad option.
            """)

    @Argument(help: "Model name from the zoo (`ckpt zoo` lists them).")
    var model: String

    @Option(name: .long, help: "Classes of the data, and of the model's head (re-initialised when the weights' head has another count).")
    var numClasses: Int

    @Option(name: .long, help: "Checkpoint holding the starting weights (what transplant writes, or any state dict of MODEL).")
    var weights: String

    @Option(name: .long, help: "Image folder: DIR/train/<class>/* and DIR/val/<class>/*, or DIR/<class>/*.")
    var data: String

    @Option(name: .shortAndLong, help: "Output state dict of the best epoch; OUT.train.pth and OUT.metrics.csv are written beside it.")
    var output: String

    @Option(name: .long, help: "What trains: feature-extract, finetune or two-stage.")
    var mode = "finetune"

    @Option(name: .long, help: "Only these modules or keys train, comma separated (classifier.0,classifier.3,classifier.6).")
    var train: String?

    @Option(name: .long, help: "These modules or keys stay frozen, comma separated (layer1,layer2).")
    var freeze: String?

    @Option(name: .long, help: "The first N modules with parameters stay frozen.")
    var freezeFirst = 0

    @Option(name: .long, help: ArgumentHelp("Learning rates of their own for the parameters under these modules, comma separated NAME=LR (features=1e-4,classifier=0.01); the rest train at --lr.", valueName: "name=lr,..."))
    var groupLr: String?

    @Option(name: .long, help: "sgd or adamw.")
    var optimizer = "sgd"

    @Option(name: .long, help: "Learning rate (of the first stage).")
    var lr = 0.001

    @Option(name: .long, help: "SGD momentum.")
    var momentum = 0.9

    @Option(name: .long, help: "Weight decay (default 0 for sgd, 0.01 for adamw).")
    var weightDecay: Double?

    @Option(name: .long, help: "Epochs in all.")
    var epochs = 5

    @Option(name: .long, help: "Images per batch.")
    var batch = 32

    @Option(name: .long, help: "Learning-rate schedule per stage, stepped per epoch: none, step (StepLR) or cosine.")
    var schedule = "none"

    @Option(name: .long, help: "Epochs of linear warm-up from a tenth of the rate at the start of each stage.")
    var warmupEpochs = 0

    @Option(name: .long, help: "StepLR's step size in epochs.")
    var stepSize = 7

    @Option(name: .long, help: "StepLR's decay factor.")
    var gamma = 0.1

    @Option(name: .long, help: "two-stage: epochs that train the head alone.")
    var stage1Epochs = 1

    @Option(name: .long, help: "two-stage: the second stage's learning rate is --lr times this.")
    var unfreezeLrFactor = 0.1

    @Option(name: .long, help: "Side of the images fed to the model (default: the zoo's input size).")
    var imageSize: Int?

    @Option(name: .long, help: "Seeds the order, the augmentation, the validation split and new layers.")
    var seed: UInt64 = 0

    @Flag(name: .long, help: "Visit the training images in ImageFolder order (classes, then file names).")
    var noShuffle = false

    @Flag(name: .long, help: "Train on Resize(S) + CenterCrop(S): no random crops or flips.")
    var noAugment = false

    @Option(name: .long, help: "Share of each class held out for validation when DIR has no val/ folder.")
    var valSplit: Double?

    @Option(name: .long, help: "Segmentation: the mask value left out of the loss and the metrics (255 for void pixels).")
    var ignoreIndex: Int?

    @Option(name: .long, help: "segnet: grey (the grey image to both inputs, the default), split (x1, x2 the red and green planes of one image) or pair (x1 from images/, x2 from the same name in images2/), as predict reads them.")
    var inputs: String?

    @Flag(name: .long, help: "Leave unreadable images out (each named once) instead of stopping.")
    var skipBadImages = false

    @Flag(name: .long, help: "Run the whole network every epoch even where only a head trains without augmentation (no cached features).")
    var noCache = false

    @Option(name: .long, help: "Frozen batch norms while training: eval (running statistics, unchanged) or train (batch statistics, running ones updated: torch's model.train() with requires_grad=False; no cached features).")
    var frozenBn = "eval"

    @Option(name: .long, help: "Threads decoding images ahead of the model.")
    var workers = 1

    @Option(name: .long, help: "Continue from OUT.train.pth as an earlier run left it.")
    var resume: String?

    @Flag(name: .long, help: "Skip the check of loaded tensors against their source and the transplant proof.")
    var noVerify = false

    @Option(name: .long, help: "Also log the epochs' scalars as a TensorBoard event file in this folder (tensorboard --logdir DIR).")
    var tensorboard: String?

    @Flag(name: .long, help: "Overwrite existing output files.")
    var force = false

    @Flag(name: .long, help: "Print a JSON report at the end (epoch lines go to stderr).")
    var json = false

    @OptionGroup var read: ReadOptions

    func run() throws {
        // batches are built on the loader's thread and freed here: large blocks go back at once
        CLI.returnLargeAllocations()
        let job: FinetuneJob
        do {
            job = try FinetuneJob(self)
        } catch let e as TrainingError {
            CLI.printError(e.description)
            throw ExitCode(64)
        }
        try CLI.run {
            try CLI.prepareKernels()
            try job.run()
        }
    }

    /// The library's options from the flags.
    /// - Throws: `TrainingError.invalidOption` for a value no option takes.
    func fineTuneOptions() throws -> FineTuneOptions {
        func choice<T: RawRepresentable & CaseIterable>(_ value: String, _ option: String) throws -> T where T.RawValue == String {
            guard let v = T(rawValue: value) else {
                throw TrainingError.invalidOption(option: option, message: "must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(value)'")
            }
            return v
        }
        func names(_ text: String?) -> [String] {
            text.map { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        }
        // torch trains a one-class head without complaint, but its cross-entropy is 0 for every
        // image: no gradient, nothing learned, 100% accuracy reported
        guard numClasses >= 2 else {
            throw TrainingError.invalidOption(option: "--num-classes", message: "must be at least 2 (the cross-entropy of one class is 0 for every image: nothing would train), got \(numClasses)")
        }
        var o = FineTuneOptions()
        o.mode = try choice(mode, "--mode")
        o.optimizer = try choice(optimizer, "--optimizer")
        o.schedule = try choice(schedule, "--schedule")
        o.train = names(train)
        o.freeze = names(freeze)
        o.freezeFirst = freezeFirst
        for item in names(groupLr) {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let rate = Double(parts[1]) else {
                throw TrainingError.invalidOption(option: "--group-lr", message: "expected NAME=LR, got '\(item)'")
            }
            o.groupLearningRates.append((parts[0], rate))
        }
        o.learningRate = lr
        o.momentum = momentum
        o.weightDecay = weightDecay
        o.epochs = epochs
        o.batchSize = batch
        o.warmupEpochs = warmupEpochs
        o.stepSize = stepSize
        o.gamma = gamma
        o.stage1Epochs = stage1Epochs
        o.unfreezeFactor = unfreezeLrFactor
        o.imageSize = imageSize
        o.seed = seed
        o.shuffle = !noShuffle
        o.augment = !noAugment
        o.validationFraction = valSplit
        o.skipBadImages = skipBadImages
        o.workers = workers
        o.verify = !noVerify
        o.cacheFeatures = !noCache
        switch frozenBn {
        case "eval": o.frozenBatchNormStatistics = false
        case "train": o.frozenBatchNormStatistics = true
        default: throw TrainingError.invalidOption(option: "--frozen-bn", message: "must be eval or train, got '\(frozenBn)'")
        }
        o.ignoreIndex = ignoreIndex
        switch inputs {
        case nil, "grey": o.inputPlanes = nil
        case "split": o.inputPlanes = [0, 1]
        case "pair":
            o.inputPlanes = [0, 1]
            o.pairedInputs = true
        case let other?:
            throw TrainingError.invalidOption(option: "--inputs", message: "must be grey, split or pair, got '\(other)'")
        }
        try o.validate()
        return o
    }

    /// `OUT.train.pth`.
    var trainCheckpointPath: String { output + ".train.pth" }
    /// `OUT.metrics.csv`.
    var metricsPath: String { output + ".metrics.csv" }
    /// `OUT.classes.txt`: the class names in index order (classifiers), what predict reads beside its weights.
    var classesPath: String { output + ".classes.txt" }
}
