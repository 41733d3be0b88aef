import CkptData
import CkptKernels
import CkptNN

// Images are NCHW float32; cached features are the head's input per image, [N, …] in a batch.

/// Where a model splits into a frozen, deterministic prefix and a head that trains: the head is
/// the end of the model's `sequentialTail` from `boundary` on, run as a `Sequential` of the same
/// module objects (so its steps update the model's own parameters).
/// PyTorch counterpart: `nn.Sequential(*list(model.classifier.children())[k:])` fed with
/// precomputed features.
public struct HeadSplit {
    /// Path of the head's first module (`fc`, `classifier.2`): its input is what is cached.
    public let boundary: String
    /// The head, keyed by the modules' paths in the model.
    public let head: Sequential

    /// The split of `model` as its trainable parameters stand, or nil when none exists: every
    /// parameter that trains must be in the head, and nothing before the head may be random or
    /// learn in training mode (a dropout, a batch norm using batch statistics), so that the
    /// prefix gives every image the same output in every epoch; and the prefix must hold
    /// parameters (a frozen network to skip). The head starts at its first
    /// module holding a trainable parameter, or earlier at the first dropout before it.
    public static func of(_ model: Module) -> HeadSplit? {
        let tail = model.sequentialTail
        func trainable(_ m: Module) -> [ObjectIdentifier] {
            m.namedParameters().filter { $0.parameter.role == .parameter && $0.parameter.requiresGrad }.map { ObjectIdentifier($0.parameter) }
        }
        let all = Set(trainable(model))
        guard !all.isEmpty, let first = tail.firstIndex(where: { !trainable($0.module).isEmpty }) else { return nil }
        var start = first
        if let dropout = tail[..<first].firstIndex(where: { isRandom($0.module) }) { start = dropout }
        let headModules = tail[start...]
        guard Set(headModules.flatMap { trainable($0.module) }) == all else { return nil }
        // a prefix without parameters saves nothing worth its memory (the cache would be the images)
        let headParameters = Set(headModules.flatMap { $0.module.namedParameters().map { ObjectIdentifier($0.parameter) } })
        guard model.namedParameters().contains(where: { !headParameters.contains(ObjectIdentifier($0.parameter)) }) else { return nil }
        // everything outside the head (shared modules included) must be deterministic
        let inHead = Set(headModules.flatMap { $0.module.namedModules().map { ObjectIdentifier($0.module) } })
        for (_, m) in model.namedModules() where !inHead.contains(ObjectIdentifier(m)) {
            if isRandom(m) { return nil }
            if let bn = m as? BatchNorm2d, !trainable(bn).isEmpty || bn.trainsOwnParameters || bn.batchStatisticsWhenFrozen { return nil }
        }
        return HeadSplit(boundary: tail[start].path, head: Sequential(named: Array(headModules)))
    }

    /// True for a module that draws random numbers in training mode.
    static func isRandom(_ m: Module) -> Bool {
        if let d = m as? Dropout { return d.probability > 0 }
        return false
    }
}

/// The inputs of a head (`HeadSplit`) for every image of a loader, computed once with the model
/// in eval mode: a feature-extraction run without augmentation then trains the head on these
/// instead of running the frozen network on every image in every epoch.
/// PyTorch counterpart: precomputing `features = backbone(x)` under `torch.no_grad()`.
public final class FeatureCache {
    /// The head's input shape per image (`[512]`, `[4096]`).
    public let featureShape: [Int]
    /// Floats per image.
    public let featureSize: Int
    /// Features of sample `i` at `i * featureSize`.
    private(set) var features: [Float]
    /// Labels per sample (-1 for a sample left out as unreadable).
    let labels: [Int]
    /// Images left out (`BadImagePolicy.skip`), in the order met.
    public let skipped: [SkippedImage]

    /// Bytes the features take.
    public var byteCount: Int { features.count * MemoryLayout<Float>.stride }

    /// Runs `model` (put in eval mode for the pass and back after) over every batch of `loader`
    /// in order and keeps each image's input to `split.boundary`; `onBatch(done, total)` after each.
    /// - Parameter byteLimit: the most the features may take; nil when a batch shows they would take more.
    /// - Throws: the loader's `DataError`, the model's errors; `TrainingError.unsupported` when the
    ///   boundary's module never ran.
    public static func build(model: Module, split: HeadSplit, loader: BatchLoader, byteLimit: Int,
                             onBatch: (Int, Int) -> Void = { _, _ in }) throws -> FeatureCache? {
        let restore = model.enterEvalMode()
        defer { restore() }
        let n = loader.sampleCount
        var features: [Float] = []
        var labels = [Int](repeating: -1, count: n)
        var skipped: [SkippedImage] = []
        var shape: [Int]?
        let batches = loader.epoch(0)
        var done = 0
        while let batch = try batches.next() {
            done += 1
            skipped += batch.skipped
            guard batch.count > 0 else { onBatch(done, batches.count); continue }
            let context = ForwardContext()
            context.inputCaptureTarget = split.boundary
            _ = try model.forward(inputs: [try DenseTensor(shape: batch.shape, values: batch.images)], context: context)
            guard let f = context.capturedInput, f.shape.first == batch.count else {
                throw TrainingError.unsupported(message: "\(split.boundary) did not run in the forward; its inputs cannot be cached")
            }
            let per = Array(f.shape.dropFirst())
            if shape == nil {
                shape = per
                let size = per.reduce(1, *)
                guard size.multipliedReportingOverflow(by: n).partialValue <= byteLimit / MemoryLayout<Float>.stride else { return nil }
                features = [Float](repeating: 0, count: size * n)
            }
            let size = per.reduce(1, *)
            f.values.withUnsafeBufferPointer { src in
                features.withUnsafeMutableBufferPointer { dst in
                    for (row, sample) in batch.sampleIndices.enumerated() {
                        for j in 0 ..< size { dst[sample * size + j] = src[row * size + j] }
                        labels[sample] = batch.labels[row]
                    }
                }
            }
            onBatch(done, batches.count)
        }
        let s = shape ?? []
        return FeatureCache(featureShape: s, features: features, labels: labels, skipped: skipped)
    }

    private init(featureShape: [Int], features: [Float], labels: [Int], skipped: [SkippedImage]) {
        self.featureShape = featureShape
        featureSize = featureShape.reduce(1, *)
        self.features = features
        self.labels = labels
        self.skipped = skipped
    }

    /// Batches in an epoch of `samples` samples.
    static func batchCount(samples: Int, batchSize: Int) -> Int { (samples + batchSize - 1) / batchSize }

    /// Batch `index` of an epoch visiting `order` in slices of `batchSize` (the loader's
    /// batches), without the images left out: features `[n] + featureShape` and labels.
    /// - Throws: `KernelError` only for impossible shapes.
    func batch(order: [Int], index: Int, batchSize: Int) throws -> (x: DenseTensor, labels: [Int]) {
        let members = order[index * batchSize ..< min(order.count, (index + 1) * batchSize)].filter { labels[$0] >= 0 }
        var values = [Float](repeating: 0, count: members.count * featureSize)
        features.withUnsafeBufferPointer { src in
            values.withUnsafeMutableBufferPointer { dst in
                for (row, sample) in members.enumerated() {
                    for j in 0 ..< featureSize { dst[row * featureSize + j] = src[sample * featureSize + j] }
                }
            }
        }
        return (try DenseTensor(shape: [members.count] + featureShape, values: values), members.map { labels[$0] })
    }
}
