import CkptKernels

/// A seeded pseudo-random generator (xoshiro256**, seeded through SplitMix64), so a model built
/// twice with one seed is identical. It does not reproduce torch's generator bit for bit.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)
    /// True for a generator that makes initialisers return zeros: shape-only models for key
    /// listings, summaries and loads that overwrite every value anyway.
    public private(set) var isShapeOnly = false

    /// A generator for shape-only models: every initialiser returns zeros, instantly.
    public static var shapeOnly: SeededGenerator {
        var g = SeededGenerator(seed: 0)
        g.isShapeOnly = true
        return g
    }

    /// True for a generator whose initialisers return shapes without values (`specOnly`).
    package private(set) var isSpecOnly = false

    /// A generator for specification-only models: weights get their shapes and no memory, so the
    /// model only answers questions about keys, shapes and sharing, and must never run.
    package static var specOnly: SeededGenerator {
        var g = shapeOnly
        g.isSpecOnly = true
        return g
    }

    /// A generator whose whole stream is fixed by `seed`.
    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// A uniform float in `[low, high)`.
    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        let u = Float(next() >> 40) / Float(1 << 24)
        return low + (high - low) * u
    }

    /// A normal sample with mean `mean` and standard deviation `std` (Box–Muller).
    public mutating func normal(mean: Float = 0, std: Float = 1) -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), .leastNonzeroMagnitude)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return mean + std * Float((-2 * Foundation_log(u1)).squareRoot() * Foundation_cos(2 * .pi * u2))
    }
}

// Foundation-free libm access keeps this file usable without importing Foundation.
#if canImport(Glibc)
import Glibc
@inline(__always) private func Foundation_log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) private func Foundation_cos(_ x: Double) -> Double { Glibc.cos(x) }
@inline(__always) private func logf(_ x: Float) -> Float { Glibc.logf(x) }
@inline(__always) private func cosf(_ x: Float) -> Float { Glibc.cosf(x) }
@inline(__always) private func sinf(_ x: Float) -> Float { Glibc.sinf(x) }
#else
import Darwin
@inline(__always) private func Foundation_log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) private func Foundation_cos(_ x: Double) -> Double { Darwin.cos(x) }
@inline(__always) private func logf(_ x: Float) -> Float { Darwin.logf(x) }
@inline(__always) private func cosf(_ x: Float) -> Float { Darwin.cosf(x) }
@inline(__always) private func sinf(_ x: Float) -> Float { Darwin.sinf(x) }
#endif

/// Weight initialisers as `torch.nn.init` defines them (distributions, not torch's exact stream).
public enum Initialization {
    /// Which fan `kaiming_*` scales by.
    public enum FanMode: Sendable { case fanIn, fanOut }

    /// `(fan_in, fan_out)` of a weight shape (`_calculate_fan_in_and_fan_out`): dimension 1 and
    /// dimension 0, each times the receptive field.
    public static func fans(of shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        guard shape.count >= 2 else { return (shape.first ?? 1, shape.first ?? 1) }
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// `kaiming_normal_(w, mode, nonlinearity='relu')`: normal with std `sqrt(2 / fan)`.
    public static func kaimingNormal(_ shape: [Int], mode: FanMode, using rng: inout SeededGenerator) -> DenseTensor {
        let (fi, fo) = fans(of: shape)
        let std = (2 / Float(max(mode == .fanIn ? fi : fo, 1))).squareRoot()
        return normal(shape, std: std, using: &rng)
    }

    /// `kaiming_uniform_(w, a=sqrt(5))`, PyTorch's default for Conv and Linear: uniform in `±1/sqrt(fan_in)`.
    public static func defaultWeight(_ shape: [Int], using rng: inout SeededGenerator) -> DenseTensor {
        let bound = 1 / Float(max(fans(of: shape).fanIn, 1)).squareRoot()
        return uniform(shape, bound: bound, using: &rng)
    }

    /// PyTorch's default bias for Conv and Linear: `count` values uniform in `±1/sqrt(fan_in)`
    /// of the layer's weight shape.
    public static func defaultBias(_ count: Int, weightShape: [Int], using rng: inout SeededGenerator) -> DenseTensor {
        let bound = 1 / Float(max(fans(of: weightShape).fanIn, 1)).squareRoot()
        return uniform([count], bound: bound, using: &rng)
    }

    /// Normal samples with mean 0 and standard deviation `std` (`normal_(0, std)`), two per
    /// Box–Muller draw (cosine and sine), in float arithmetic: fast enough for 100 M weights.
    public static func normal(_ shape: [Int], std: Float, using rng: inout SeededGenerator) -> DenseTensor {
        if rng.isSpecOnly { return DenseTensor(placeholderShape: shape) }
        var t = DenseTensor(shape: shape)
        if rng.isShapeOnly { return t }
        let n = t.count
        t.values.withUnsafeMutableBufferPointer { v in
            var i = 0
            while i < n {
                let u1 = max(Float(rng.next() >> 40) / Float(1 << 24), .leastNormalMagnitude)
                let theta = 2 * Float.pi * Float(rng.next() >> 40) / Float(1 << 24)
                let r = std * (-2 * logf(u1)).squareRoot()
                v[i] = r * cosf(theta)
                if i + 1 < n { v[i + 1] = r * sinf(theta) }
                i += 2
            }
        }
        return t
    }

    /// Uniform samples in `[-bound, bound)` (`uniform_(-bound, bound)`).
    public static func uniform(_ shape: [Int], bound: Float, using rng: inout SeededGenerator) -> DenseTensor {
        if rng.isSpecOnly { return DenseTensor(placeholderShape: shape) }
        var t = DenseTensor(shape: shape)
        if rng.isShapeOnly { return t }
        for i in 0 ..< t.count { t.values[i] = rng.uniform(-bound, bound) }
        return t
    }
}
