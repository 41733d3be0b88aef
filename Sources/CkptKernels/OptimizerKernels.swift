internal import CkptAVX512

/// Optimizer updates compiled for this CPU's vector extensions, where it has them.
public enum OptimizerKernels {
    /// True when `sgd` and `adam` run on AVX-512 with FMA (`avx512f` and `fma` among the CPU's flags).
    public static let isSupported: Bool = CPUFeatures.flags.contains("avx512f") && CPUFeatures.flags.contains("fma")

    /// Whether `sgd` and `adam` use them (tests compare both paths).
    nonisolated(unsafe) public static var isEnabled = isSupported

    /// torch's SGD update of elements `range` on sixteen lanes (see `SGD` in `CkptTrain` for the
    /// rule), or false without the extensions (the caller runs its portable loop then).
    /// Results are bit for bit those of the portable loop: the same fused multiply-adds per element.
    public static func sgd(weights w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                           buffer b: UnsafeMutablePointer<Float>?, range: Range<Int>, weightDecay wd: Float,
                           momentum m: Float, keep: Float, nesterov: Bool, first: Bool, step: Float) -> Bool {
        guard isEnabled else { return false }
        SGDUpdate.run(weights: w, gradient: g, buffer: b, range: range, weightDecay: wd, momentum: m, keep: keep,
                      nesterov: nesterov, first: first, step: step)
        return true
    }

    /// torch's Adam/AdamW moments and update of elements `range` on sixteen lanes (see `Adam` in
    /// `CkptTrain` for the rule; `coupledDecay` is Adam's L2 term, 0 for none or for AdamW), or
    /// false without the extensions. Bit for bit the portable loops' results.
    public static func adam(weights w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                            expAvg m: UnsafeMutablePointer<Float>, expAvgSq v: UnsafeMutablePointer<Float>, range: Range<Int>,
                            coupledDecay: Float, lerpWeight: Float, beta2: Float, oneMinusBeta2: Float,
                            divisor: Float, eps: Float, scale: Float) -> Bool {
        guard isEnabled else { return false }
        AdamUpdate.run(weights: w, gradient: g, expAvg: m, expAvgSq: v, range: range, coupledDecay: coupledDecay,
                       lerpWeight: lerpWeight, beta2: beta2, oneMinusBeta2: oneMinusBeta2, divisor: divisor, eps: eps, scale: scale)
        return true
    }
}
