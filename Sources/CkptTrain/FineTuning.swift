import CkptData
import CkptKernels
import CkptNN
import CkptSurgery
import CkptTensor
import CkptZoo

/// One fine-tuning run of a zoo classifier on an image folder, from fitted weights to the last
/// epoch: the tutorials' transfer-learning loop as a value the caller drives.
///
/// Made in one go (`init`): the options checked, the folder read (its class count must be the
/// model's), the weights fitted through the plan `forward` and `transplant` use and checked bit
/// for bit against their source, the first stage's selection, optimizer and schedule built.
/// `run` then trains epoch by epoch, reporting every batch and every epoch through callbacks;
/// the library writes no file and prints nothing: the caller saves what `modelStateDict()` and
/// `trainingCheckpoint()` return when an epoch reports it is worth saving.
/// PyTorch counterpart: `train_model(model, criterion, optimizer, scheduler, num_epochs)` of the
/// transfer-learning tutorial, with `ImageFolder` + `DataLoader` for the data.
public final class FineTuning {
    /// The options, checked.
    public let options: FineTuneOptions
    /// The model with its fitted weights and the plan that fitted them.
    public let fitted: FittedModel
    /// Classification or segmentation (segnet: a class per pixel, mean IoU in validation).
    public let task: TrainingTask
    /// The image folder of a classification run: classes, training and validation samples, issues found.
    public let dataset: ImageDataset?
    /// The image and mask folders of a segmentation run.
    public let segmentationDataset: SegmentationDataset?
    /// The model's inputs: each gets one plane of the image (segnet's x1 and x2).
    let inputCount: Int
    /// The image plane each input gets.
    let inputPlanes: [Int]
    /// Side of the images fed to the model.
    public let imageSize: Int
    /// Planes of the images fed to the model (over all its inputs).
    public let channels: Int
    /// Tensors compared with their source before training (0 with `verify` off).
    public let verifiedTensors: Int
    let trainLoader: BatchLoader
    let validationLoader: BatchLoader?
    let trainer: Trainer
    let stages: FineTuneStages
    /// The stage being trained (or about to be).
    private(set) var stage: Stage
    private(set) var schedule: (any LearningRateSchedule)?
    private(set) var frozen: FrozenTensors
    /// The next epoch to train, from 0.
    public internal(set) var nextEpoch = 0
    /// Optimizer steps taken, over every stage (a resumed run counts the earlier ones).
    public internal(set) var steps = 0
    /// The head's cached inputs for the current stage, once built.
    var features: StageFeatures?
    /// The best epoch so far (from 1) and its score.
    public internal(set) var best: (epoch: Int, score: (Double, Double))?

    /// Prepares a run of the zoo model `model` with `numClasses` outputs on the folder `data`,
    /// starting from `weights`.
    /// - Throws: `TrainingError.invalidOption` for bad options; `DataError` for a folder that
    ///   cannot be read; `TrainingError.classCount` when its classes do not number `numClasses`;
    ///   `TrainingError.weightsDoNotFit` / `.sourceMismatch` for weights that do not fit or did not
    ///   load as they are; `TrainingError.unknownName` for a `--train` / `--freeze` name the model
    ///   does not have; `ZooError`, `OptimizerError`.
    public init(model: String, numClasses: Int, weights: LocatedStateDict, data: String, options: FineTuneOptions) throws {
        try options.validate()
        guard numClasses >= 1 else { throw TrainingError.invalidOption(option: "--num-classes", message: "must be positive, got \(numClasses)") }
        let entry = try Zoo.entry(named: model)
        let shapes = entry.defaultInputShapes
        guard let shape = shapes.first, shape.count == 3, shapes.allSatisfy({ $0 == shape }) else {
            throw TrainingError.unsupported(message: "\(entry.name) takes inputs of different shapes; fine-tuning cannot feed it")
        }
        // several inputs (segnet's x1, x2) are the planes of one image, one plane each
        guard shapes.count == 1 || shape[0] == 1 else {
            throw TrainingError.unsupported(message: "\(entry.name) takes \(shapes.count) inputs of \(shape[0]) channels; fine-tuning feeds one plane per input")
        }
        task = entry.family == "segnet" ? .segmentation : .classification
        inputCount = shapes.count
        let badImages: BadImagePolicy = options.skipBadImages ? .skip : .fail
        let size = options.imageSize ?? shape[1]
        if let chosen = options.inputPlanes {
            guard shapes.count > 1, chosen.count == shapes.count else {
                throw TrainingError.invalidOption(option: "--inputs", message: "\(entry.name) takes \(shapes.count) input(s); --inputs \(options.pairedInputs ? "pair" : "split") is for a model with two")
            }
        }
        // the image's planes: grey repeated once per input, or RGB when --inputs picks planes of it
        let planes = options.inputPlanes == nil ? shapes.count * shape[0] : 3
        inputPlanes = options.inputPlanes ?? Array(0 ..< shapes.count)
        // planes of a split RGB image are grey inputs: normalised with the grey statistics, as predict does
        let normalization: Normalization? = options.inputPlanes == nil ? nil : .imagenetGrey
        let trainTransform: ImageTransform = options.augment ? .train(size: size, channels: planes, normalization: normalization)
            : .noAugment(size: size, channels: planes, normalization: normalization)
        let loaderOptions = LoaderOptions(batchSize: options.batchSize, shuffle: options.shuffle, seed: options.seed,
                                          workers: options.workers, badImages: badImages)
        var validationOptions = loaderOptions
        validationOptions.shuffle = false
        switch task {
        case .classification:
            let dataset = try ImageDataset.load(data, validationFraction: options.validationFraction, seed: options.seed)
            guard dataset.classes.count == numClasses else {
                throw TrainingError.classCount(data: data, classes: dataset.classes, numClasses: numClasses)
            }
            guard !dataset.train.isEmpty else { throw TrainingError.unsupported(message: "\(data): no training images") }
            self.dataset = dataset
            segmentationDataset = nil
            trainLoader = try BatchLoader(samples: dataset.train, transform: trainTransform, options: loaderOptions)
            validationLoader = dataset.validation.isEmpty ? nil : try BatchLoader(
                samples: dataset.validation, transform: .eval(size: size, channels: planes, normalization: normalization), options: validationOptions)
        case .segmentation:
            let dataset = try SegmentationDataset.load(data, validationFraction: options.validationFraction, seed: options.seed,
                                                       secondImages: options.pairedInputs)
            guard !dataset.train.isEmpty else { throw TrainingError.unsupported(message: "\(data): no training image and mask pairs") }
            self.dataset = nil
            segmentationDataset = dataset
            trainLoader = try BatchLoader(segmentation: dataset.train, transform: trainTransform, options: loaderOptions)
            validationLoader = dataset.validation.isEmpty ? nil : try BatchLoader(
                segmentation: dataset.validation, transform: .eval(size: size, channels: planes, normalization: normalization), options: validationOptions)
        }
        let fitted = try FittedModel.fit(model: entry.name, numClasses: numClasses, weights: weights, seed: options.seed)
        verifiedTensors = options.verify ? try fitted.verifyAgainstSource() : 0
        self.options = options
        self.fitted = fitted
        channels = planes
        imageSize = size
        stages = FineTuneStages(options: options, fitted: fitted)
        // every stage's names are checked now, so a typo stops the run before the first step
        for s in options.stages.reversed() { try stages.selection(for: s).apply(to: fitted.model) }
        stage = options.stages[0]
        trainer = Trainer(model: fitted.model, optimizer: nil, loss: CrossEntropy(ignoreIndex: options.ignoreIndex ?? -100))
        trainer.seed = options.seed
        frozen = FrozenTensors(model: fitted.model)
        try enter(stage)
    }

    /// Makes `stage` the current one: its selection applied, a fresh optimizer and schedule (the
    /// tutorials build a new optimizer when they unfreeze), the frozen tensors snapshotted.
    /// - Throws: `TrainingError`, `OptimizerError`.
    func enter(_ stage: Stage) throws {
        try stages.selection(for: stage).apply(to: fitted.model)
        let optimizer = try stages.optimizer(for: stage)
        schedule = try stages.schedule(for: stage, optimizer: optimizer)
        trainer.optimizer = optimizer
        fitted.model.setTraining(true)
        for (_, m) in fitted.model.namedModules() {
            (m as? BatchNorm2d)?.batchStatisticsWhenFrozen = options.frozenBatchNormStatistics
        }
        frozen = FrozenTensors(model: fitted.model)
        self.stage = stage
    }

    /// Keys of the parameters that train in the current stage, in state-dict order.
    public var trainableKeys: [String] {
        fitted.model.namedParameters().filter { $0.parameter.role == .parameter && $0.parameter.requiresGrad }.map(\.key)
    }

    /// Keys of the tensors held bit for bit in the current stage (frozen parameters, and the
    /// buffers of modules that do not train).
    public var frozenKeys: [String] { frozen.keys }

    /// Elements of the parameters that train now (a shared parameter once).
    public var trainableParameterCount: Int {
        ParameterGroup.trainableParameters(of: fitted.model).reduce(0) { $0 + $1.parameter.value.count }
    }

    /// The current stage, from 1, and how many stages the run has.
    public var stageNumber: (current: Int, count: Int) { (stage.index + 1, options.stages.count) }

    /// The head's first module when the current stage will train it on cached features (see
    /// `FineTuneOptions.cacheFeatures`), else nil.
    public var cachedHeadBoundary: String? {
        options.cacheFeatures && !options.augment ? HeadSplit.of(fitted.model)?.boundary : nil
    }

    /// How the data folder was read (`train/val folders`, `one folder split 80/20 (seed 0)`).
    public var dataLayout: String { dataset?.layout ?? segmentationDataset?.layout ?? "" }
    /// The class names (a classification folder's), or `0` … `N−1` for segmentation.
    public var classNames: [String] { dataset?.classes ?? (0 ..< fitted.numClasses).map(String.init) }
    /// Training and validation samples.
    public var sampleCounts: (train: Int, validation: Int) {
        (dataset?.train.count ?? segmentationDataset?.train.count ?? 0, dataset?.validation.count ?? segmentationDataset?.validation.count ?? 0)
    }
    /// What reading the folder found wrong (hidden folders, empty classes, unpaired files).
    public var dataIssues: [FolderIssue] { dataset?.issues ?? segmentationDataset?.issues ?? [] }

    /// The model's inputs from a batch of images: the batch itself, or one plane each.
    /// - Throws: `KernelError` only for impossible shapes.
    func inputs(_ batch: ImageBatch) throws -> [DenseTensor] {
        let x = try DenseTensor(shape: batch.shape, values: batch.images)
        guard inputCount > 1 else { return [x] }
        let (n, planes, h, w) = (batch.shape[0], batch.shape[1], batch.shape[2], batch.shape[3])
        let plane = h * w
        return try inputPlanes.map { c in
            var values = [Float](repeating: 0, count: n * plane)
            for i in 0 ..< n {
                let from = (i * planes + c) * plane
                values[i * plane ..< (i + 1) * plane] = batch.images[from ..< from + plane]
            }
            return try DenseTensor(shape: [n, 1, h, w], values: values)
        }
    }

    /// Fails on a mask value that is neither a class nor the ignored index, naming the mask.
    /// - Throws: `DataError(.invalidArgument)` naming the mask file, the value and the class count.
    func checkLabels(_ batch: ImageBatch, validation: Bool) throws {
        guard task == .segmentation, let samples = segmentationDataset else { return }
        let ignore = options.ignoreIndex ?? -100
        guard let at = batch.labels.firstIndex(where: { ($0 < 0 || $0 >= fitted.numClasses) && $0 != ignore }) else { return }
        let pixels = batch.labelShape.dropFirst().reduce(1, *)
        let sample = batch.sampleIndices[at / max(pixels, 1)]
        let all = validation ? samples.validation : samples.train
        let path = sample < all.count ? all[sample].maskPath : "<mask>"
        throw DataError(.invalidArgument, file: path,
                        "holds class \(batch.labels[at]) but the model has \(fitted.numClasses) classes (0…\(fitted.numClasses - 1))" +
                        (options.ignoreIndex == nil ? "; --ignore-index names a value to leave out (255 for void)" : ", and --ignore-index is \(ignore)"))
    }

    /// The validation pass of an epoch: eval-mode loss and accuracy (and mean IoU for segmentation).
    /// - Throws: the loader's `DataError`, the model's errors.
    func evaluate(_ loader: BatchLoader, epoch: Int) throws -> EvaluationResult {
        switch task {
        case .classification:
            return try Evaluation.run(fitted.model, loader: loader, epoch: epoch, loss: trainer.loss)
        case .segmentation:
            return try Evaluation.segmentation(fitted.model, loader: loader, epoch: epoch, classes: fitted.numClasses, loss: trainer.loss,
                                               inputs: { try self.inputs($0) }, check: { try self.checkLabels($0, validation: true) })
        }
    }

    /// Training batches per epoch.
    public var batchesPerEpoch: Int { trainLoader.batchesPerEpoch }

    /// The model's state dict now (zoo keys, float32 and int64 counters): what `OUT` holds when
    /// the epoch just reported is the best.
    /// - Throws: `TensorError` only for impossible shapes.
    public func modelStateDict() throws -> StateDict {
        try fitted.model.stateDict()
    }

    /// `{model, optimizer, scheduler, epoch}` as the run stands: the optimizer and schedule of
    /// the next epoch's stage, `epoch` the epochs completed.
    /// - Throws: `TensorError` only for impossible shapes.
    public func trainingCheckpoint() throws -> TrainingCheckpoint {
        let optimizerState = try trainer.optimizer?.stateDict() ?? .none
        return TrainingCheckpoint(model: try modelStateDict(), optimizer: optimizerState, scheduler: schedule?.stateDict() ?? .none,
                                  epoch: nextEpoch,
                                  progress: FineTuneProgress(mode: options.mode.rawValue, numClasses: fitted.numClasses, steps: steps,
                                                             stage: stage.index, bestEpoch: best?.epoch,
                                                             bestScore: best.map { [$0.score.0, $0.score.1] }))
    }

    /// Continues from a checkpoint `trainingCheckpoint()` made (`--resume OUT.train.pth`): the
    /// model's weights, the optimizer's and schedule's state, the epoch, the best epoch so far.
    /// Tensors frozen in the checkpoint's stage must be what the fitted weights hold.
    /// - Throws: `TrainingError.resume` when it was made for another mode, class count or stage,
    ///   its run is complete, or a frozen tensor differs from the weights; `NNError` when its
    ///   model does not load strictly; `OptimizerError` when its optimizer or schedule state does
    ///   not fit.
    public func resume(from checkpoint: TrainingCheckpoint) throws {
        let p = checkpoint.progress
        guard p.mode == options.mode.rawValue else {
            throw TrainingError.resume(message: "the checkpoint was made in --mode \(p.mode), this run is --mode \(options.mode.rawValue)")
        }
        guard p.numClasses == fitted.numClasses else {
            throw TrainingError.resume(message: "the checkpoint's model has \(p.numClasses) classes, this run \(fitted.numClasses)")
        }
        guard checkpoint.epoch < options.epochs else {
            throw TrainingError.resume(message: "the checkpoint has completed \(checkpoint.epoch) epoch(s) and --epochs is \(options.epochs); raise --epochs to train on")
        }
        let target = options.stage(ofEpoch: checkpoint.epoch)
        guard p.stage == target.index else {
            throw TrainingError.resume(message: "the checkpoint holds stage \(p.stage + 1)'s optimizer, epoch \(checkpoint.epoch + 1) is in stage \(target.index + 1) (another --stage1-epochs?)")
        }
        try enter(target)
        let weightsFrozen = frozen
        try fitted.model.load(stateDict: checkpoint.model, strictness: .strict)
        if let changed = weightsFrozen.entries.first(where: { !FrozenTensors.sameBits($0.values, $0.parameter.value.values) }) {
            throw TrainingError.resume(message: "frozen tensor \(changed.key) differs between the checkpoint and the weights (other --weights or --seed?)")
        }
        guard let optimizer = trainer.optimizer else { throw TrainingError.resume(message: "no optimizer") }
        try optimizer.loadStateDict(checkpoint.optimizer)
        switch (schedule, checkpoint.scheduler) {
        case (nil, .none): break
        case let (s?, saved) where saved.dictValue != nil: try s.loadStateDict(saved)
        default:
            throw TrainingError.resume(message: "the checkpoint \(schedule == nil ? "has" : "has no") schedule state and this run \(schedule == nil ? "has no schedule" : "has one"); pass the --schedule it was made with")
        }
        frozen = FrozenTensors(model: fitted.model)
        nextEpoch = checkpoint.epoch
        steps = p.steps
        trainer.seed = options.seed &+ UInt64(p.steps)
        if let e = p.bestEpoch, let s = p.bestScore, s.count == 2 { best = (e, (s[0], s[1])) } else { best = nil }
    }
}
