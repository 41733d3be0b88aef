// N images, C channels, H rows, W columns (NCHW).

/// Batch normalisation in eval mode, and its folding into a preceding convolution.
///
/// Eval forward uses the running statistics, so it is a per-channel affine map and caches
/// nothing. PyTorch counterpart: `torch.nn.functional.batch_norm(training=False)`.
public enum BatchNormalization {
    /// The per-channel `scale` and `shift` with `bn(x) = scale·x + shift`:
    /// `scale = γ / sqrt(var + eps)`, `shift = β − mean·scale`.
    /// - Throws: `KernelError.shapeMismatch` when the four vectors differ in length.
    public static func affine(
        weight: DenseTensor, bias: DenseTensor, runningMean: DenseTensor, runningVariance: DenseTensor,
        epsilon: Float = 1e-5
    ) throws -> (scale: [Float], shift: [Float]) {
        let c = runningMean.count
        for (name, t) in [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVariance)]
            where t.shape != [c] {
            throw KernelError.shapeMismatch(operation: "batch_norm", operand: name, expected: "[\(c)]", got: t.shape)
        }
        var scale = [Float](repeating: 0, count: c)
        var shift = [Float](repeating: 0, count: c)
        for i in 0 ..< c {
            let inv = 1 / (runningVariance.values[i] + epsilon).squareRoot()
            scale[i] = weight.values[i] * inv
            shift[i] = bias.values[i] - runningMean.values[i] * scale[i]
        }
        return (scale, shift)
    }

    /// `y = (x − mean) / sqrt(var + eps) · γ + β` per channel of `[N, C, …]`, optionally followed by ReLU.
    /// - Throws: `KernelError.shapeMismatch` when the statistics do not have `C` entries.
    public static func forward(
        _ input: consuming DenseTensor, weight: DenseTensor, bias: DenseTensor,
        runningMean: DenseTensor, runningVariance: DenseTensor, epsilon: Float = 1e-5,
        epilogue: Convolution.Epilogue = .none
    ) throws -> DenseTensor {
        guard input.rank >= 2 else {
            throw KernelError.shapeMismatch(operation: "batch_norm", operand: "input", expected: "[N, C, ...]", got: input.shape)
        }
        let c = input.shape[1]
        guard runningMean.count == c else {
            throw KernelError.shapeMismatch(operation: "batch_norm", operand: "running_mean", expected: "[\(c)]", got: runningMean.shape)
        }
        let (scale, shift) = try affine(weight: weight, bias: bias, runningMean: runningMean,
                                        runningVariance: runningVariance, epsilon: epsilon)
        let plane = input.shape.dropFirst(2).reduce(1, *)
        let shape = input.shape
        // the input is consumed: written in place when the caller is done with it
        var out = consume input
        let relu = epilogue.isReLU
        out.values.withUnsafeMutableBufferPointer { vb in
            guard let v = vb.baseAddress else { return }
            let box = UncheckedSendable(v)
            parallelFor(shape[0] * c, minimumWork: 8) { p in
                let row = box.value + p * plane
                let a = scale[p % c], b = shift[p % c]
                if relu {
                    for i in 0 ..< plane { row[i] = max(row[i] * a + b, 0) }
                } else {
                    for i in 0 ..< plane { row[i] = row[i] * a + b }
                }
            }
        }
        return out
    }

    /// Folds an eval-mode batch norm into the convolution before it: returns the weight and bias
    /// of one convolution computing `bn(conv(x))`.
    ///
    /// `weight` is `[C_out, …]` (a Conv2d weight); `bias` may be nil.
    /// - Throws: `KernelError.shapeMismatch` when the channel counts differ.
    public static func fold(
        convolutionWeight weight: DenseTensor, convolutionBias bias: DenseTensor?,
        scale: [Float], shift: [Float]
    ) throws -> (weight: DenseTensor, bias: DenseTensor) {
        let cout = weight.shape.first ?? 0
        guard scale.count == cout, shift.count == cout else {
            throw KernelError.shapeMismatch(operation: "batch_norm fold", operand: "conv weight",
                                            expected: "[\(scale.count), ...]", got: weight.shape)
        }
        let per = cout == 0 ? 0 : weight.count / cout
        var w = weight.values
        var b = [Float](repeating: 0, count: cout)
        for o in 0 ..< cout {
            for i in 0 ..< per { w[o * per + i] *= scale[o] }
            b[o] = (bias?.values[o] ?? 0) * scale[o] + shift[o]
        }
        return (DenseTensor(uncheckedShape: weight.shape, values: w), DenseTensor(uncheckedShape: [cout], values: b))
    }
}
