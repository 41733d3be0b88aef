import CkptTensor

// Batches are NCHW float32: N images, C channels, H rows, W columns.

/// A sample a loader left out of its batch because it could not be read, with why.
public struct SkippedImage: Sendable, Equatable, CustomStringConvertible {
    /// Index of the sample in the loader's sample list.
    public var sampleIndex: Int
    /// The file that failed (the image, or the mask of a segmentation pair).
    public var path: String
    /// What went wrong.
    public var error: DataError

    /// Sample `sampleIndex`, left out because of `error` about `path`.
    public init(sampleIndex: Int, path: String, error: DataError) {
        self.sampleIndex = sampleIndex
        self.path = path
        self.error = error
    }

    /// The error's one line.
    public var description: String { error.description }
}

/// One batch of transformed images and their targets.
/// PyTorch counterpart: one `(inputs, labels)` of `for inputs, labels in DataLoader(...)`.
public struct ImageBatch: Sendable {
    /// Position of the batch in its epoch.
    public var index: Int
    /// The epoch it belongs to.
    public var epoch: Int
    /// `[N, C, H, W]`; N is smaller than the batch size for the last batch or when images were skipped.
    public var shape: [Int]
    /// `N * C * H * W` values, NCHW.
    public var images: [Float]
    /// Classification: N class indices. Segmentation: N * H * W class indices, NHW.
    public var labels: [Int]
    /// `[N]` or `[N, H, W]`.
    public var labelShape: [Int]
    /// For each image, its index in the loader's sample list.
    public var sampleIndices: [Int]
    /// Samples of this batch left out (only with `BadImagePolicy.skip`).
    public var skipped: [SkippedImage]

    /// Number of images.
    public var count: Int { sampleIndices.count }

    /// The images as a float32 `Tensor` of `shape`.
    /// - Throws: `TensorError` only if the shape overflows (it cannot for a built batch).
    public func tensor() throws -> Tensor {
        try Tensor(float32: images, shape: shape)
    }
}

/// What a loader does with a file it cannot decode.
public enum BadImagePolicy: String, Sendable {
    /// The batch holding it throws the decoder's error (PyTorch's DataLoader behaviour).
    case fail
    /// It is left out of its batch and listed in `ImageBatch.skipped`.
    case skip
}

/// How a `BatchLoader` reads.
/// PyTorch counterpart: the arguments of `torch.utils.data.DataLoader`.
public struct LoaderOptions: Sendable, Equatable {
    /// Images per batch (`batch_size`).
    public var batchSize: Int
    /// Visit the samples in a seeded random order each epoch (`shuffle=True`); otherwise in the
    /// order given (ImageFolder order).
    public var shuffle: Bool
    /// Leave out the last batch when it is smaller (`drop_last`).
    public var dropLast: Bool
    /// Seeds the order and every augmentation draw: the batches depend on it and the epoch only.
    public var seed: UInt64
    /// Threads decoding and transforming (`num_workers`); 0 decodes on the consumer's thread.
    public var workers: Int
    /// At most this many batches are decoded ahead of the consumer (`prefetch_factor` × workers):
    /// the memory bound.
    public var prefetchBatches: Int
    /// What a bad file does.
    public var badImages: BadImagePolicy
    /// The label a centre crop pads segmentation masks with (255 is a common ignore index).
    public var maskFill: UInt8

    /// Options with DataLoader's defaults where it has them, two workers and four batches ahead.
    public init(batchSize: Int, shuffle: Bool = true, dropLast: Bool = false, seed: UInt64 = 0, workers: Int = 2,
                prefetchBatches: Int = 4, badImages: BadImagePolicy = .fail, maskFill: UInt8 = 0) {
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.workers = workers
        self.prefetchBatches = prefetchBatches
        self.badImages = badImages
        self.maskFill = maskFill
    }
}
