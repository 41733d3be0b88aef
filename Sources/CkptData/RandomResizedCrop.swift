import Foundation

/// torchvision's `RandomResizedCrop` geometry: which box of an image a random crop keeps.
///
/// The box is chosen exactly as `RandomResizedCrop.get_params` chooses it, given the same draws:
/// up to 10 attempts of an area fraction uniform in `scale` and an aspect ratio log-uniform in
/// `ratio`, each accepted when its rounded width and height fit; otherwise the central crop of
/// the whole image clamped to `ratio`. With `SeededRandom` the draws are ours, not torch's.
public struct RandomResizedCrop: Sendable, Equatable {
    /// Output side: the kept box is resized to `size` × `size`.
    public var size: Int
    /// Bounds of the kept fraction of the image area (torchvision's default 0.08 … 1).
    public var scale: ClosedRange<Double>
    /// Bounds of the kept box's width / height (torchvision's default 3/4 … 4/3).
    public var ratio: ClosedRange<Double>

    /// A crop to `size` with torchvision's defaults `scale=(0.08, 1.0)`, `ratio=(3/4, 4/3)`.
    /// PyTorch counterpart: `torchvision.transforms.RandomResizedCrop(size)`.
    public init(size: Int, scale: ClosedRange<Double> = 0.08 ... 1.0, ratio: ClosedRange<Double> = (3.0 / 4.0) ... (4.0 / 3.0)) {
        self.size = size
        self.scale = scale
        self.ratio = ratio
    }

    /// The box kept from an image of `width` × `height`, drawing from `sampler`.
    /// PyTorch counterpart: `RandomResizedCrop.get_params(img, scale, ratio)`.
    public func box<S: AugmentationSampler>(width: Int, height: Int, sampler: inout S) -> CropBox {
        let area = Double(height * width)
        // torch.log(torch.tensor(ratio)): float32 logarithms
        let logLower = logf(Float(ratio.lowerBound)), logUpper = logf(Float(ratio.upperBound))
        for _ in 0 ..< 10 {
            let targetArea = area * sampler.areaFraction(lower: scale.lowerBound, upper: scale.upperBound)
            let aspect = sampler.aspectRatio(logLower: logLower, logUpper: logUpper)
            let w = Self.pythonRound(sqrt(targetArea * aspect))
            let h = Self.pythonRound(sqrt(targetArea / aspect))
            if w > 0, w <= width, h > 0, h <= height {
                let top = sampler.offset(count: height - h + 1)
                let left = sampler.offset(count: width - w + 1)
                return CropBox(top: top, left: left, height: h, width: w)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = Self.pythonRound(Double(w) / ratio.lowerBound)
        } else if inRatio > ratio.upperBound {
            w = Self.pythonRound(Double(h) * ratio.upperBound)
        }
        return CropBox(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w)
    }

    /// `image` cropped to a box drawn from `sampler` and resized to `size` × `size`.
    /// - Throws: `DataError.invalidArgument` when `size` is not positive.
    /// PyTorch counterpart: `RandomResizedCrop(size)(image)` on a PIL image.
    public func apply<S: AugmentationSampler>(to image: RasterImage, sampler: inout S) throws -> RasterImage {
        try Self.resizedCrop(image, box: box(width: image.width, height: image.height, sampler: &sampler), size: size)
    }

    /// `image` cropped to `box`, then resized to `size` × `size` with PIL's antialiased bilinear
    /// filter (skipped when the box already has that size).
    /// - Throws: `DataError.invalidArgument` for an empty box or a size that is not positive.
    /// PyTorch counterpart: `torchvision.transforms.functional.resized_crop(img, top, left, height,
    /// width, [size, size], BILINEAR, antialias=True)`.
    public static func resizedCrop(_ image: RasterImage, box: CropBox, size: Int) throws -> RasterImage {
        try image.cropped(box).resized(width: size, height: size)
    }

    /// Python's `int(round(x))` for a float: halves go to the even integer.
    static func pythonRound(_ x: Double) -> Int {
        guard x.isFinite, abs(x) < 1e15 else { return 0 }
        return Int(x.rounded(.toNearestOrEven))
    }
}

/// torchvision's `Resize(size)` for one int: the shorter side becomes `size`, the longer
/// `int(size * long / short)` (truncated, in double precision), so the aspect is kept.
public struct Resize: Sendable, Equatable {
    /// The shorter side after resizing.
    public var size: Int

    /// Resize the shorter side to `size`.
    /// PyTorch counterpart: `torchvision.transforms.Resize(size)` (bilinear, `antialias=True`).
    public init(size: Int) { self.size = size }

    /// The output width and height for an image of `width` × `height` (torchvision's
    /// `_compute_resized_output_size`).
    public func outputSize(width: Int, height: Int) -> (width: Int, height: Int) {
        let short = min(width, height), long = max(width, height)
        // Python: int(size * long / short), an exact integer product then a true division
        let newLong = Int((Double(size * long) / Double(short)).rounded(.towardZero))
        return width <= height ? (size, newLong) : (newLong, size)
    }

    /// `image` resized; returned as is when it already has the output size.
    /// - Throws: `DataError.invalidArgument` when `size` is not positive.
    public func apply(to image: RasterImage) throws -> RasterImage {
        let out = outputSize(width: image.width, height: image.height)
        return try image.resized(width: out.width, height: out.height)
    }

    /// `mask` resized by nearest neighbour to the size `apply(to:)` gives the image.
    /// - Throws: `DataError.invalidArgument` when `size` is not positive.
    public func apply(to mask: LabelMap) throws -> LabelMap {
        let out = outputSize(width: mask.width, height: mask.height)
        return try mask.resizedNearest(width: out.width, height: out.height)
    }
}
