import Foundation

/// The random draws of data augmentation, one method per draw torchvision makes: a source is
/// either `SeededRandom` or a replay of recorded torch draws (tests).
public protocol AugmentationSampler {
    /// A uniform draw in `lower ..< upper`: the fraction of the image area a random crop keeps
    /// (torch: `torch.empty(1).uniform_(scale[0], scale[1]).item()`).
    mutating func areaFraction(lower: Double, upper: Double) -> Double
    /// A log-uniform aspect ratio: `exp(u)` for `u` uniform in `logLower ..< logUpper`, computed in
    /// float32 (torch: `torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()`).
    mutating func aspectRatio(logLower: Float, logUpper: Float) -> Double
    /// A uniform integer in `0 ..< count` (torch: `torch.randint(0, count, (1,)).item()`).
    mutating func offset(count: Int) -> Int
    /// True with probability `p` (torch: `torch.rand(1) < p`).
    mutating func chance(_ p: Double) -> Bool
}

/// A small, fast, seedable generator (SplitMix64) whose sequence depends only on its seed and
/// stream: the same on every machine, Swift version and thread schedule. Draws cannot equal
/// torch's (another generator), only follow the same distributions.
public struct SeededRandom: AugmentationSampler, RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator for `seed`, on the independent stream named by `stream` (for example
    /// `[epoch, sampleIndex]`: each sample of each epoch then draws the same values whichever
    /// thread decodes it).
    public init(seed: UInt64, stream: [UInt64] = []) {
        var s = SeededRandom.mix(seed ^ 0x6A09_E667_F3BC_C908)
        for (i, v) in stream.enumerated() {
            s = SeededRandom.mix(s ^ SeededRandom.mix(v &+ UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15))
        }
        state = s
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SeededRandom.mix(state)
    }

    /// A uniform double in [0, 1) from the top 53 bits.
    public mutating func unit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// A uniform integer in `0 ..< count` (Lemire's multiply-shift with rejection; 0 when
    /// `count` is not positive).
    public mutating func below(_ count: Int) -> Int {
        guard count > 1 else { return 0 }
        let n = UInt64(count)
        var m = next().multipliedFullWidth(by: n)
        if m.low < n {
            let threshold = (0 &- n) % n
            while m.low < threshold { m = next().multipliedFullWidth(by: n) }
        }
        return Int(m.high)
    }

    /// `values` in a random order (Fisher–Yates from the last element, with `below`).
    public mutating func shuffled<T>(_ values: [T]) -> [T] {
        var out = values
        var i = out.count - 1
        while i > 0 {
            out.swapAt(i, below(i + 1))
            i -= 1
        }
        return out
    }

    /// See `AugmentationSampler.areaFraction`.
    public mutating func areaFraction(lower: Double, upper: Double) -> Double {
        lower + (upper - lower) * unit()
    }

    /// See `AugmentationSampler.aspectRatio`.
    public mutating func aspectRatio(logLower: Float, logUpper: Float) -> Double {
        Double(expf(logLower + (logUpper - logLower) * Float(unit())))
    }

    /// See `AugmentationSampler.offset`.
    public mutating func offset(count: Int) -> Int { below(count) }

    /// See `AugmentationSampler.chance`.
    public mutating func chance(_ p: Double) -> Bool { unit() < p }

    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
