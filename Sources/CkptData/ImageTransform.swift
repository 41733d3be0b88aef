import Foundation

// Tensors here are CHW float32: C channels, H rows, W columns (torchvision's ToTensor layout).

/// Per-channel mean and standard deviation subtracted and divided after `ToTensor`.
/// PyTorch counterpart: `torchvision.transforms.Normalize(mean, std)`.
public struct Normalization: Sendable, Equatable {
    /// Subtracted from each channel (float32, as torch holds it).
    public var mean: [Float]
    /// Divides each channel.
    public var std: [Float]

    /// A normalisation by `mean` and `std`, one value per channel.
    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }

    /// ImageNet's RGB statistics, the tutorials' `[0.485, 0.456, 0.406]`, `[0.229, 0.224, 0.225]`.
    public static let imagenet = Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
    /// For grey input: the means of ImageNet's three values, `[0.449]`, `[0.226]`.
    public static let imagenetGrey = Normalization(mean: [0.449], std: [0.226])
    /// No change: mean 0, std 1 (ToTensor alone).
    public static let identity = Normalization(mean: [0], std: [1])

    /// The statistics for `channels` channels: kept when they have that many, a single value
    /// repeated otherwise.
    /// - Throws: `DataError.invalidArgument` when neither holds or a std is 0.
    public func broadcast(to channels: Int) throws -> Normalization {
        guard mean.count == std.count, std.allSatisfy({ $0 != 0 && $0.isFinite }) else {
            throw DataError(.invalidArgument, file: "<normalize>", "mean and std need one finite, non-zero std per mean, got \(mean.count) means and std \(std)")
        }
        if mean.count == channels { return self }
        guard mean.count == 1 else {
            throw DataError(.invalidArgument, file: "<normalize>", "\(mean.count) means for \(channels) channels")
        }
        return Normalization(mean: Array(repeating: mean[0], count: channels), std: Array(repeating: std[0], count: channels))
    }
}

extension RasterImage {
    /// Writes the CHW float32 tensor of this image to `out` (`channels` planes, each
    /// `height * width`): `(v / 255 - mean) / std`, each operation rounded to float32 as torch
    /// rounds it. A 1-channel image fills every output plane with its grey plane.
    /// PyTorch counterpart: `Normalize(mean, std)(ToTensor()(image))` (or `Grayscale(n)` first).
    func writeTensor(into out: UnsafeMutableBufferPointer<Float>, channels outChannels: Int, normalization: Normalization) {
        let plane = width * height
        precondition(out.count >= plane * outChannels && normalization.mean.count >= outChannels, "tensor buffer too small")
        var table = [Float](repeating: 0, count: 256)
        pixels.withUnsafeBufferPointer { p in
            guard let pBase = p.baseAddress, let oBase = out.baseAddress else { return }
            for c in 0 ..< outChannels {
                let source = channels == 1 ? 0 : c
                let mean = normalization.mean[c], std = normalization.std[c]
                // one table per channel: 256 values, each computed as torch computes it
                for v in 0 ..< 256 { table[v] = (Float(v) / 255 - mean) / std }
                table.withUnsafeBufferPointer { t in
                    guard let tBase = t.baseAddress else { return }
                    let target = oBase + c * plane
                    var from = pBase + source
                    for i in 0 ..< plane {
                        target[i] = tBase[Int(from.pointee)]
                        from += channels
                    }
                }
            }
        }
    }

    /// The CHW float32 tensor of this image, `outChannels` planes: `(v / 255 - mean) / std` per
    /// channel, a grey image repeated in every plane.
    /// - Throws: `DataError.invalidArgument` when `normalization` does not fit `outChannels`
    ///   (`Normalization.broadcast(to:)`) or an RGB image is asked for other than 3 planes.
    /// PyTorch counterpart: `Normalize(mean, std)(ToTensor()(image))`.
    public func tensorValues(channels outChannels: Int, normalization: Normalization) throws -> [Float] {
        guard outChannels >= 1, channels == 1 || outChannels == channels else {
            throw DataError(.invalidArgument, file: "<image>", "a \(channels)-channel image gives 1 plane per channel (or a grey one any count), asked for \(outChannels)")
        }
        let norm = try normalization.broadcast(to: outChannels)
        return [Float](unsafeUninitializedCapacity: width * height * outChannels) { buffer, count in
            writeTensor(into: buffer, channels: outChannels, normalization: norm)
            count = buffer.count
        }
    }
}

/// What happens to each image between decoding and the batch: a geometry (random resized crop,
/// or resize then centre crop), an optional horizontal flip, then ToTensor and Normalize.
///
/// PyTorch counterpart: the tutorials' `transforms.Compose([...])` for `'train'` and `'val'`.
public struct ImageTransform: Sendable, Equatable {
    /// How the image is brought to `size` × `size`.
    public enum Geometry: Sendable, Equatable {
        /// `RandomResizedCrop(size, scale, ratio)`.
        case randomResizedCrop(RandomResizedCrop)
        /// `Resize(resize)` (shorter side) then `CenterCrop(crop)`.
        case resizeCenterCrop(resize: Int, crop: Int)
    }

    /// How the image is brought to its output size.
    public var geometry: Geometry
    /// Probability of a left-right flip (`RandomHorizontalFlip(p)`; 0 for none).
    public var flipProbability: Double
    /// Output channels: 3 is RGB; 1 is grey (`convert("L")`); any other count repeats the grey
    /// plane (`Grayscale(num_output_channels)`), for models with 2-channel inputs.
    public var channels: Int
    /// Applied after `ToTensor`.
    public var normalization: Normalization

    /// A transform from its parts.
    public init(geometry: Geometry, flipProbability: Double, channels: Int, normalization: Normalization) {
        self.geometry = geometry
        self.flipProbability = flipProbability
        self.channels = channels
        self.normalization = normalization
    }

    /// The default normalisation for `channels`: ImageNet's for 3, its grey average otherwise.
    public static func defaultNormalization(channels: Int) -> Normalization {
        channels == 3 ? .imagenet : .imagenetGrey
    }

    /// Training: `RandomResizedCrop(size)`, `RandomHorizontalFlip()`, `ToTensor()`, `Normalize`.
    public static func train(size: Int, channels: Int = 3, normalization: Normalization? = nil) -> ImageTransform {
        ImageTransform(geometry: .randomResizedCrop(RandomResizedCrop(size: size)), flipProbability: 0.5,
                       channels: channels, normalization: normalization ?? defaultNormalization(channels: channels))
    }

    /// Evaluation: `Resize(round(size * 256 / 224))`, `CenterCrop(size)`, `ToTensor()`, `Normalize`.
    public static func eval(size: Int, channels: Int = 3, normalization: Normalization? = nil) -> ImageTransform {
        let resize = RandomResizedCrop.pythonRound(Double(size) * 256 / 224)
        return ImageTransform(geometry: .resizeCenterCrop(resize: resize, crop: size), flipProbability: 0,
                              channels: channels, normalization: normalization ?? defaultNormalization(channels: channels))
    }

    /// Training without augmentation (`--no-augment`): `Resize(size)`, `CenterCrop(size)`,
    /// `ToTensor()`, `Normalize`.
    public static func noAugment(size: Int, channels: Int = 3, normalization: Normalization? = nil) -> ImageTransform {
        ImageTransform(geometry: .resizeCenterCrop(resize: size, crop: size), flipProbability: 0,
                       channels: channels, normalization: normalization ?? defaultNormalization(channels: channels))
    }

    /// The output side.
    public var size: Int {
        switch geometry {
        case let .randomResizedCrop(crop): return crop.size
        case let .resizeCenterCrop(_, crop): return crop
        }
    }

    /// `[C, size, size]`.
    public var outputShape: [Int] { [channels, size, size] }

    /// Checks the sizes, the channel count and the normalisation.
    /// - Throws: `DataError.invalidArgument` naming the bad part.
    public func validate() throws {
        guard size > 0, size <= 16384 else { throw DataError(.invalidArgument, file: "<transform>", "output size must be 1…16384, got \(size)") }
        if case let .resizeCenterCrop(resize, _) = geometry, resize <= 0 || resize > 16384 {
            throw DataError(.invalidArgument, file: "<transform>", "resize must be 1…16384, got \(resize)")
        }
        if case let .randomResizedCrop(c) = geometry, c.scale.lowerBound <= 0 || c.scale.upperBound > 1 || c.ratio.lowerBound <= 0 {
            throw DataError(.invalidArgument, file: "<transform>", "random crop scale must lie in (0, 1] and ratio be positive, got \(c.scale), \(c.ratio)")
        }
        guard channels >= 1, channels <= 64 else { throw DataError(.invalidArgument, file: "<transform>", "channels must be 1…64, got \(channels)") }
        _ = try normalization.broadcast(to: channels)
    }

    /// The image after geometry and flip, in 3 channels when `channels` is 3 and 1 otherwise.
    /// - Throws: `DataError.invalidArgument` for bad sizes.
    public func apply<S: AugmentationSampler>(to image: RasterImage, sampler: inout S) throws -> RasterImage {
        var out = try image.converted(toChannels: channels == 3 ? 3 : 1)
        switch geometry {
        case let .randomResizedCrop(crop):
            out = try crop.apply(to: out, sampler: &sampler)
        case let .resizeCenterCrop(resize, crop):
            out = try Resize(size: resize).apply(to: out).centerCropped(width: crop, height: crop)
        }
        if flipProbability > 0, sampler.chance(flipProbability) { out = out.flippedHorizontally() }
        return out
    }

    /// An image and its mask through the same geometry and flip: bilinear for the image,
    /// nearest for the mask, `fill` where a centre crop pads the mask.
    /// - Throws: `DataError.invalidArgument` when the mask's size differs from the image's.
    public func apply<S: AugmentationSampler>(to image: RasterImage, mask: LabelMap, fill: UInt8 = 0,
                                              sampler: inout S) throws -> (RasterImage, LabelMap) {
        guard image.width == mask.width, image.height == mask.height else {
            throw DataError(.invalidArgument, file: "<mask>", "mask of \(mask.width)x\(mask.height) for an image of \(image.width)x\(image.height)")
        }
        var out = try image.converted(toChannels: channels == 3 ? 3 : 1)
        var labels = mask
        switch geometry {
        case let .randomResizedCrop(crop):
            let box = crop.box(width: out.width, height: out.height, sampler: &sampler)
            out = try RandomResizedCrop.resizedCrop(out, box: box, size: crop.size)
            labels = try labels.cropped(box).resizedNearest(width: crop.size, height: crop.size)
        case let .resizeCenterCrop(resize, crop):
            let r = Resize(size: resize)
            out = try r.apply(to: out).centerCropped(width: crop, height: crop)
            labels = try r.apply(to: labels).centerCropped(width: crop, height: crop, fill: fill)
        }
        if flipProbability > 0, sampler.chance(flipProbability) {
            out = out.flippedHorizontally()
            labels = labels.flippedHorizontally()
        }
        return (out, labels)
    }

    /// The CHW float32 values of `image` after the whole transform.
    /// - Throws: as `apply(to:sampler:)`, and for a normalisation that does not fit `channels`.
    public func tensorValues<S: AugmentationSampler>(_ image: RasterImage, sampler: inout S) throws -> [Float] {
        try apply(to: image, sampler: &sampler).tensorValues(channels: channels, normalization: normalization)
    }
}
