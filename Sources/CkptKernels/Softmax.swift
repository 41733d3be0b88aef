#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// A sample is one row of [N, C] logits, or one pixel (image n, row y, column x) of [N, C, H, W]
// logits, whose C class scores then lie H·W floats apart.

/// Softmax over the class dimension, for predictions.
///
/// Forward only: training goes through `CrossEntropy`, whose backward folds the softmax in.
/// PyTorch counterpart: `torch.softmax(x, dim)`.
public enum Softmax {
    /// `torch.softmax(logits, dimension)`: `exp(x − max) / Σ exp(x − max)` along `dimension`
    /// (1 is the class dimension of `[N, C]` and `[N, C, H, W]`; negative counts from the end).
    /// Sums run in Double; a NaN anywhere in a sample makes the whole sample NaN, as in torch.
    /// - Throws: `KernelError.invalidArgument` when `dimension` is not a dimension of `logits`.
    public static func forward(_ logits: DenseTensor, dimension: Int = 1) throws -> DenseTensor {
        let rank = logits.rank
        guard rank >= 1, (-rank ..< rank).contains(dimension) else {
            throw KernelError.invalidArgument(
                operation: "softmax", message: "dimension \(dimension) is out of range for input of shape \(logits.shape)")
        }
        let layout = ClassLayout(shape: logits.shape, classDimension: dimension < 0 ? dimension + rank : dimension)
        guard logits.count > 0 else { return logits }
        var out = [Float].uninitialized(logits.count)
        logits.values.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { yb in
                guard let x = xb.baseAddress, let y = yb.baseAddress else { return }
                let box = UncheckedSendable((x, y))
                layout.forEachPart { _, samples, scratch in
                    let (x, y) = box.value
                    for s in samples {
                        let base = layout.base(of: s)
                        let sum = layout.exponentials(x + base, into: scratch).sum
                        for c in 0 ..< layout.classes { y[base + c * layout.inner] = Float(scratch[c] / sum) }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: logits.shape, values: out)
    }
}

/// Where each sample's class scores lie in a contiguous tensor: `outer` blocks of `classes`
/// planes of `inner` floats, so sample `s` has class `c` at `base(of: s) + c·inner`.
/// `[N, C]` is `(N, C, 1)`; `[N, C, H, W]` is `(N, C, H·W)`.
struct ClassLayout: Sendable {
    /// Product of the sizes before the class dimension.
    let outer: Int
    /// Size of the class dimension.
    let classes: Int
    /// Product of the sizes after the class dimension: the distance between two classes' scores.
    let inner: Int

    /// The layout of `shape` with its classes along `classDimension` (a valid index).
    init(shape: [Int], classDimension d: Int) {
        outer = shape[..<d].reduce(1, *)
        classes = shape[d]
        inner = shape[(d + 1)...].reduce(1, *)
    }

    /// Number of samples: one per class-score vector.
    var samples: Int { outer * inner }

    /// Offset of sample `s`'s class-0 score.
    @inline(__always) func base(of s: Int) -> Int {
        inner == 1 ? s * classes : (s / inner) * classes * inner + s % inner
    }

    /// Runs `body(part, samples, scratch)` over consecutive ranges of samples covering all of
    /// them, in parallel when there is enough work; `scratch` holds `classes` Doubles owned by
    /// the part. Parts depend only on the sizes, so sums combined part by part are reproducible.
    func forEachPart(_ body: (Int, Range<Int>, UnsafeMutablePointer<Double>) -> Void) {
        let total = samples
        let n = partCount
        guard total > 0, n > 0 else { return }
        let chunk = (total + n - 1) / n
        parallelFor(n) { part in
            let lo = part * chunk, hi = min(total, lo + chunk)
            guard lo < hi else { return }
            withUnsafeTemporaryAllocation(of: Double.self, capacity: max(classes, 1)) { scratch in
                guard let s = scratch.baseAddress else { return }
                body(part, lo ..< hi, s)
            }
        }
    }

    /// How many parts `forEachPart` splits the samples into: one below about 16 Ki scores (a
    /// thread costs more than the exponentials), at most 64.
    var partCount: Int {
        let total = samples
        guard total > 0 else { return 0 }
        return min(total, 64, max(1, total * max(classes, 1) / 16_384))
    }

    /// Fills `scratch[c]` with `exp(x[c·inner] − max)` and returns the max and the sum of the
    /// exponentials, in Double: the shared first half of softmax and cross-entropy. The max
    /// propagates NaN, so a NaN score makes every exponential NaN. Needs `classes ≥ 1`.
    @inline(__always) func exponentials(_ x: UnsafePointer<Float>, into scratch: UnsafeMutablePointer<Double>)
        -> (max: Double, sum: Double) {
        var m = x[0]
        for c in 1 ..< classes {
            let v = x[c * inner]
            if v > m || v.isNaN { m = v }
            if m.isNaN { break }
        }
        let top = Double(m)
        var sum = 0.0
        for c in 0 ..< classes {
            let e = exp(Double(x[c * inner]) - top)
            scratch[c] = e
            sum += e
        }
        return (top, sum)
    }
}
