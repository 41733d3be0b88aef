import Foundation

/// Decodes, transforms and batches a dataset, epoch by epoch.
///
/// Everything random is a function of (`seed`, epoch, sample index): the visiting order is a
/// seeded shuffle per epoch, each sample's augmentation draws come from its own stream. So a
/// batch is the same whichever thread builds it and whenever, and `epoch(_:)` (threads decoding
/// ahead) gives exactly what `batch(epoch:index:)` (the caller's thread) gives.
/// PyTorch counterpart: `torch.utils.data.DataLoader(dataset, batch_size, shuffle, num_workers)`
/// over an `ImageFolder` with a transform (its draws are torch's, not these).
public final class BatchLoader: Sendable {
    enum Source: Sendable {
        case classification([Sample])
        case segmentation([SegmentationSample])
    }

    let source: Source
    /// The transform every image goes through.
    public let transform: ImageTransform
    /// How batches are formed and read.
    public let options: LoaderOptions
    private let normalization: Normalization

    /// A loader over classification samples.
    /// - Throws: `DataError.invalidArgument` for a batch size below 1, negative workers, a
    ///   prefetch below 1, or a transform that does not validate.
    public convenience init(samples: [Sample], transform: ImageTransform, options: LoaderOptions) throws {
        try self.init(source: .classification(samples), transform: transform, options: options)
    }

    /// A loader over segmentation pairs: image and mask get the same crop and flip.
    /// - Throws: as `init(samples:transform:options:)`.
    public convenience init(segmentation samples: [SegmentationSample], transform: ImageTransform, options: LoaderOptions) throws {
        try self.init(source: .segmentation(samples), transform: transform, options: options)
    }

    init(source: Source, transform: ImageTransform, options: LoaderOptions) throws {
        guard options.batchSize >= 1, options.workers >= 0, options.workers <= 256, options.prefetchBatches >= 1 else {
            throw DataError(.invalidArgument, file: "<loader>", "batch size and prefetch must be at least 1 and workers 0…256, got \(options.batchSize), \(options.prefetchBatches), \(options.workers)")
        }
        try transform.validate()
        self.source = source
        self.transform = transform
        self.options = options
        self.normalization = try transform.normalization.broadcast(to: transform.channels)
    }

    /// Number of samples.
    public var sampleCount: Int {
        switch source {
        case let .classification(s): return s.count
        case let .segmentation(s): return s.count
        }
    }

    /// Batches in one epoch (`len(loader)`).
    public var batchesPerEpoch: Int {
        options.dropLast ? sampleCount / options.batchSize : (sampleCount + options.batchSize - 1) / options.batchSize
    }

    /// The sample indices of `epoch` in visiting order: a seeded shuffle, or `0 ..< n` without
    /// shuffling.
    public func order(epoch: Int) -> [Int] {
        let all = Array(0 ..< sampleCount)
        guard options.shuffle else { return all }
        var rng = SeededRandom(seed: options.seed, stream: [0x4F52_4445_52, UInt64(truncatingIfNeeded: epoch)])
        return rng.shuffled(all)
    }

    /// Batch `index` of `epoch`, built on the calling thread.
    /// - Throws: the `DataError` of the first bad file with `BadImagePolicy.fail`;
    ///   `DataError.invalidArgument` for an index outside the epoch.
    public func batch(epoch: Int, index: Int) throws -> ImageBatch {
        try batch(epoch: epoch, index: index, order: order(epoch: epoch))
    }

    /// Batches of `epoch` in order, decoded ahead on `options.workers` threads.
    public func epoch(_ epoch: Int) -> EpochBatches {
        EpochBatches(loader: self, epoch: epoch)
    }

    func batch(epoch: Int, index: Int, order: [Int]) throws -> ImageBatch {
        guard index >= 0, index < batchesPerEpoch else {
            throw DataError(.invalidArgument, file: "<loader>", "batch \(index) of an epoch of \(batchesPerEpoch)")
        }
        let members = Array(order[index * options.batchSize ..< min(order.count, (index + 1) * options.batchSize)])
        let size = transform.size, c = transform.channels
        let perImage = c * size * size
        var labels: [Int] = []
        var kept: [Int] = []
        var skipped: [SkippedImage] = []
        // every kept slot is written whole; the buffer ends after the last kept one
        let images = try [Float](unsafeUninitializedCapacity: members.count * perImage) { buffer, count in
            count = 0
            for sampleIndex in members {
                var rng = SeededRandom(seed: options.seed, stream: [UInt64(truncatingIfNeeded: epoch), UInt64(sampleIndex)])
                let slot = UnsafeMutableBufferPointer(rebasing: buffer[kept.count * perImage ..< (kept.count + 1) * perImage])
                do {
                    switch source {
                    case let .classification(samples):
                        let image = try ImageDecoder.decode(contentsOf: samples[sampleIndex].path).image
                        let out = try transform.apply(to: image, sampler: &rng)
                        out.writeTensor(into: slot, channels: c, normalization: normalization)
                        labels.append(samples[sampleIndex].classIndex)
                    case let .segmentation(samples):
                        var image = try ImageDecoder.decode(contentsOf: samples[sampleIndex].imagePath).image
                        if let second = samples[sampleIndex].secondImagePath {
                            image = try RasterImage.planes(image, try ImageDecoder.decode(contentsOf: second).image, secondFile: second)
                        }
                        let mask = try ImageDecoder.labelMap(contentsOf: samples[sampleIndex].maskPath)
                        let (out, outMask) = try transform.apply(to: image, mask: mask, fill: options.maskFill, sampler: &rng)
                        out.writeTensor(into: slot, channels: c, normalization: normalization)
                        labels += outMask.labels.map { Int($0) }
                    }
                    kept.append(sampleIndex)
                    count += perImage
                } catch let error as DataError {
                    guard options.badImages == .skip else { throw error }
                    skipped.append(SkippedImage(sampleIndex: sampleIndex, path: error.file, error: error))
                }
            }
        }
        var isSegmentation = false
        if case .segmentation = source { isSegmentation = true }
        return ImageBatch(index: index, epoch: epoch, shape: [kept.count, c, size, size], images: images, labels: labels,
                          labelShape: isSegmentation ? [kept.count, size, size] : [kept.count],
                          sampleIndices: kept, skipped: skipped)
    }

}
