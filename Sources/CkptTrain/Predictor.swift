import CkptData
import CkptKernels
import CkptNN
import CkptZoo

// Inputs are NCHW float32: N samples, C channels, H rows, W columns. A classifier's output is
// [N, K] (K classes); a segmentation model's is [N, K, H, W], one score per class and pixel.

/// How the image files of one sample become the model's inputs.
public enum InputForm: String, Sendable, CaseIterable {
    /// One image, the model's one input (a classifier): RGB for a 3-channel model, grey
    /// (`convert("L")`, repeated for 2 channels) otherwise.
    case one
    /// Two images, each converted to grey, one per input (segnet's `x1`, `x2`).
    case pair
    /// One image whose red and green planes are the two grey inputs (segnet's `x1`, `x2`): a
    /// two-channel image stored as RGB; blue is not used.
    case split
    /// One image, converted to grey, fed to every input (what `finetune` feeds segnet by default).
    case grey

    /// Image files per sample.
    public var filesPerSample: Int { self == .pair ? 2 : 1 }
}

/// How a `Predictor` reads and batches.
public struct PredictionOptions: Sendable, Equatable {
    /// Samples per forward pass.
    public var batchSize: Int
    /// Side of the square the images are cropped to (default: the zoo's input size).
    public var imageSize: Int?
    /// How files become inputs (default: `.one` for one-input models, `.pair` for two).
    public var inputForm: InputForm?
    /// What an image that cannot be read does: stop (`.fail`) or leave the sample out (`.skip`).
    public var badImages: BadImagePolicy

    /// Options with `batchSize` samples per pass, the zoo's size and input form, bad images failing.
    public init(batchSize: Int = 32, imageSize: Int? = nil, inputForm: InputForm? = nil, badImages: BadImagePolicy = .fail) {
        self.batchSize = batchSize
        self.imageSize = imageSize
        self.inputForm = inputForm
        self.badImages = badImages
    }
}

/// One class and its probability.
public struct ClassProbability: Sendable, Equatable {
    /// Index of the class in the head's outputs.
    public var index: Int
    /// Its softmax probability.
    public var probability: Float

    /// A class and its probability.
    public init(index: Int, probability: Float) {
        self.index = index
        self.probability = probability
    }
}

/// What a classifier makes of one sample.
public struct ImagePrediction: Sendable, Equatable {
    /// Index of the sample in the list given.
    public var sample: Int
    /// The sample's files (one, or two for a pair).
    public var files: [String]
    /// The softmax over the head's outputs, one probability per class.
    public var probabilities: [Float]

    /// The `k` most probable classes, most probable first; equal probabilities keep the lower
    /// index first. PyTorch counterpart: `torch.topk(p, k)` (whose tie order is unspecified).
    public func top(_ k: Int) -> [ClassProbability] {
        let order = probabilities.indices.sorted { a, b in
            probabilities[a] != probabilities[b] ? probabilities[a] > probabilities[b] : a < b
        }
        return order.prefix(max(0, k)).map { ClassProbability(index: $0, probability: probabilities[$0]) }
    }
}

/// What a segmentation model makes of one sample: the most probable class of every pixel.
public struct MaskPrediction: Sendable, Equatable {
    /// Index of the sample in the list given.
    public var sample: Int
    /// The sample's files (one, or two for a pair).
    public var files: [String]
    /// The class of every pixel of the cropped input (`argmax` over the classes; the lower index
    /// on ties, as `torch.argmax`).
    public var mask: LabelMap
    /// Pixels of each class.
    public var pixelsPerClass: [Int]
}

/// The outcome of one batch: its predictions in sample order, and the samples left out.
public struct PredictionBatch<Prediction: Sendable>: Sendable {
    /// Predictions of the samples that could be read, in the order given.
    public var predictions: [Prediction]
    /// Samples left out (only with `BadImagePolicy.skip`), `sampleIndex` counting from the
    /// first sample of the whole call.
    public var skipped: [SkippedImage]
    /// Samples handled so far, this batch's included.
    public var done: Int
    /// Samples in the call.
    public var total: Int
}

/// Predictions of a zoo model with fitted weights on image files: the eval transform, an
/// eval-mode forward in batches, then a softmax (classifiers) or a per-pixel argmax (segnet).
///
/// The transform is the one `ckpt finetune` validates with: `Resize(round(S·256/224))`,
/// `CenterCrop(S)`, `ToTensor()`, `Normalize` (ImageNet's mean and std for RGB, their means for
/// grey). Images of a batch are decoded in parallel; the library prints nothing.
/// PyTorch counterpart: `model.eval(); with torch.no_grad(): torch.softmax(model(x), 1)` over
/// `torchvision.transforms.Compose([Resize, CenterCrop, ToTensor, Normalize])`.
public final class Predictor {
    /// The model and its weights.
    public let fitted: FittedModel
    /// The options, checked.
    public let options: PredictionOptions
    /// How files become inputs.
    public let inputForm: InputForm
    /// Side of the model's input images.
    public let imageSize: Int
    /// What each input image goes through.
    public let transform: ImageTransform

    /// A predictor over `fitted` (in eval mode from now on).
    /// - Throws: `TrainingError.invalidOption` for a batch size below 1, an image size outside
    ///   1…4096 or not a multiple of 32 for segnet, or an input form the model does not take.
    public init(_ fitted: FittedModel, options: PredictionOptions = PredictionOptions()) throws {
        let entry = try Zoo.entry(named: fitted.name)
        let inputs = entry.defaultInputShapes
        guard options.batchSize >= 1 else {
            throw TrainingError.invalidOption(option: "--batch", message: "must be at least 1, got \(options.batchSize)")
        }
        let form = options.inputForm ?? (inputs.count == 2 ? .pair : .one)
        guard (form == .one) == (inputs.count == 1), inputs.count <= 2, inputs.allSatisfy({ $0.count == 3 }) else {
            let takes = inputs.count == 1 ? "one image per sample (one)" : "two grey images (pair), one split image (split) or one grey image for both (grey)"
            throw TrainingError.invalidOption(option: "--inputs", message: "\(entry.name) takes \(takes), got \(form.rawValue)")
        }
        let size = options.imageSize ?? inputs[0][1]
        guard size >= 1, size <= 4096 else {
            throw TrainingError.invalidOption(option: "--image-size", message: "must be 1…4096, got \(size)")
        }
        if entry.family == "segnet", size % 32 != 0 {
            throw TrainingError.invalidOption(option: "--image-size", message: "\(entry.name) halves the image five times: it must be a multiple of 32, got \(size)")
        }
        let channels = inputs.count == 1 ? inputs[0][0] : (form == .grey ? inputs.count : 1)
        var transform = ImageTransform.eval(size: size, channels: channels)
        if form == .split {
            // the image kept in colour, each plane normalised as a grey one
            transform = .eval(size: size, channels: 3, normalization: .imagenetGrey)
        }
        try transform.validate()
        self.fitted = fitted
        self.options = options
        self.inputForm = form
        self.imageSize = size
        self.transform = transform
        fitted.model.setTraining(false)
    }

    /// True when the model's output has a class score per pixel (segnet).
    public var isSegmentation: Bool { fitted.model.inputNames.count == 2 }

    /// Checks that a class list names every class of the head.
    /// - Throws: `TrainingError.labelCount` naming `source` and both counts.
    public func check(labels: [String], source: String) throws {
        guard labels.count == fitted.numClasses else {
            throw TrainingError.labelCount(source: source, labels: labels.count, numClasses: fitted.numClasses)
        }
    }

    /// Softmax probabilities of every sample (`samples[i]` holds sample `i`'s files: one, or two
    /// for a pair), batch by batch.
    /// - Throws: the first unreadable image's `DataError` with `BadImagePolicy.fail`;
    ///   `TrainingError.nonFiniteOutput`; `TrainingError.unsupported` for a segmentation model;
    ///   the model's errors; whatever `onBatch` throws.
    public func classify(_ samples: [[String]], onBatch: (PredictionBatch<ImagePrediction>) throws -> Void) throws {
        guard !isSegmentation else { throw TrainingError.unsupported(message: "\(fitted.name) gives a class per pixel: segment, not classify") }
        try forEachBatch(samples) { kept, output, skipped, done in
            let p = try Softmax.forward(output)
            let k = p.shape[1]
            var predictions: [ImagePrediction] = []
            for (i, sample) in kept.enumerated() {
                let row = Array(p.values[i * k ..< (i + 1) * k])
                let files = samples[sample]
                if row.contains(where: { !$0.isFinite }) { throw TrainingError.nonFiniteOutput(image: files.joined(separator: ", ")) }
                predictions.append(ImagePrediction(sample: sample, files: files, probabilities: row))
            }
            try onBatch(PredictionBatch(predictions: predictions, skipped: skipped, done: done, total: samples.count))
        }
    }

    /// Every sample's prediction at once (see `classify(_:onBatch:)`).
    /// - Throws: as `classify(_:onBatch:)`.
    public func classify(_ samples: [[String]]) throws -> (predictions: [ImagePrediction], skipped: [SkippedImage]) {
        var all: [ImagePrediction] = [], skipped: [SkippedImage] = []
        try classify(samples) { all += $0.predictions; skipped += $0.skipped }
        return (all, skipped)
    }

    /// The class map of every sample, batch by batch.
    /// - Throws: as `classify(_:onBatch:)`; `TrainingError.unsupported` for a model whose output
    ///   is not per pixel, or more than 256 classes (a map holds bytes).
    public func segment(_ samples: [[String]], onBatch: (PredictionBatch<MaskPrediction>) throws -> Void) throws {
        guard isSegmentation else { throw TrainingError.unsupported(message: "\(fitted.name) is a classifier: it gives classes, not masks") }
        guard fitted.numClasses <= 256 else {
            throw TrainingError.unsupported(message: "\(fitted.numClasses) classes do not fit an 8-bit mask (at most 256)")
        }
        try forEachBatch(samples) { kept, output, skipped, done in
            var predictions: [MaskPrediction] = []
            for (i, sample) in kept.enumerated() {
                let (mask, counts) = try Predictor.argmax(output, sample: i, file: samples[sample].joined(separator: ", "))
                predictions.append(MaskPrediction(sample: sample, files: samples[sample], mask: mask, pixelsPerClass: counts))
            }
            try onBatch(PredictionBatch(predictions: predictions, skipped: skipped, done: done, total: samples.count))
        }
    }

    /// Runs the model on the samples in batches: `body(kept, output, skipped, done)` per batch,
    /// `kept` the indices of the samples whose outputs `output` holds, in order.
    private func forEachBatch(_ samples: [[String]], _ body: ([Int], DenseTensor, [SkippedImage], Int) throws -> Void) throws {
        let perSample = inputForm.filesPerSample
        if let bad = samples.first(where: { $0.count != perSample }) {
            throw TrainingError.invalidOption(option: "--image", message: "\(inputForm.rawValue) takes \(perSample) file(s) per sample, got \(bad.count)")
        }
        var start = 0
        while start < samples.count {
            let end = min(samples.count, start + options.batchSize)
            let (inputs, kept, skipped) = try decode(samples, start ..< end)
            if !kept.isEmpty {
                let output = try fitted.model.evaluate(inputs)
                try body(kept, output, skipped, end)
            } else {
                try body([], DenseTensor(shape: [0, fitted.numClasses]), skipped, end)
            }
            start = end
        }
    }

    /// The model's inputs for `samples[range]`, decoded in parallel, with the samples kept and
    /// those left out.
    private func decode(_ samples: [[String]], _ range: Range<Int>) throws -> (inputs: [DenseTensor], kept: [Int], skipped: [SkippedImage]) {
        let inputCount = fitted.model.inputNames.count
        let planeCount = inputCount == 1 ? transform.channels : 1
        let plane = imageSize * imageSize
        let perInput = planeCount * plane
        let members = Array(range)
        // one slot per sample, each written by one thread
        let slots = UnsafeMutableBufferPointer<Result<[Float], DataError>?>.allocate(capacity: members.count)
        slots.initialize(repeating: nil)
        defer {
            _ = slots.deinitialize()
            slots.deallocate()
        }
        let form = inputForm, transform = transform
        parallelFor(members.count) { j in
            let files = samples[members[j]]
            do {
                var none = SeededRandom(seed: 0) // the eval transform draws nothing
                switch form {
                case .one, .grey:
                    slots[j] = .success(try transform.tensorValues(try ImageDecoder.decode(contentsOf: files[0]).image, sampler: &none))
                case .pair:
                    var both: [Float] = []
                    for file in files {
                        both += try transform.tensorValues(try ImageDecoder.decode(contentsOf: file).image, sampler: &none)
                    }
                    slots[j] = .success(both)
                case .split:
                    let planes = try transform.tensorValues(try ImageDecoder.decode(contentsOf: files[0]).image, sampler: &none)
                    slots[j] = .success(Array(planes[0 ..< 2 * plane]))
                }
            } catch let e as DataError {
                slots[j] = .failure(e)
            } catch {
                slots[j] = .failure(DataError(.invalidArgument, file: files[0], "\(error)"))
            }
        }
        var kept: [Int] = [], skipped: [SkippedImage] = []
        var buffers = [[Float]](repeating: [], count: inputCount)
        for (j, index) in members.enumerated() {
            switch slots[j] {
            case let .failure(e)?:
                guard options.badImages == .skip else { throw e }
                skipped.append(SkippedImage(sampleIndex: index, path: e.file, error: e))
                continue
            case nil:
                continue
            case let .success(v)?:
                for i in 0 ..< inputCount { buffers[i] += v[i * perInput ..< (i + 1) * perInput] }
                kept.append(index)
            }
        }
        let inputs = try buffers.map { try DenseTensor(shape: [kept.count, planeCount, imageSize, imageSize], values: $0) }
        return (inputs, kept, skipped)
    }

    /// The per-pixel argmax of sample `n` of `[N, K, H, W]` scores and each class's pixel count.
    /// - Throws: `TrainingError.nonFiniteOutput` naming `file` when a score is NaN or infinite.
    static func argmax(_ scores: DenseTensor, sample n: Int, file: String) throws -> (LabelMap, [Int]) {
        let (k, h, w) = (scores.shape[1], scores.shape[2], scores.shape[3])
        let plane = h * w
        var labels = [UInt8](repeating: 0, count: plane)
        var counts = [Int](repeating: 0, count: k)
        var finite = true
        scores.values.withUnsafeBufferPointer { v in
            let base = n * k * plane
            for p in 0 ..< plane {
                var best = 0
                var top = v[base + p]
                finite = finite && top.isFinite
                for c in 1 ..< max(k, 1) {
                    let x = v[base + c * plane + p]
                    finite = finite && x.isFinite
                    if x > top { top = x; best = c }
                }
                labels[p] = UInt8(truncatingIfNeeded: best)
                counts[best] += 1
            }
        }
        guard finite else { throw TrainingError.nonFiniteOutput(image: file) }
        return (try LabelMap(width: w, height: h, labels: labels), counts)
    }
}
