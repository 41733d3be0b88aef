internal import CkptAVX512

// N images, C channels, H rows, W columns (NCHW); statistics are per channel over N·H·W values.

/// The batch statistics of a training-mode batch norm: what its backward needs besides the input
/// (x̂ is formed again from `x`, `mean` and invstd as the backward reads it), and what the running
/// statistics take.
public struct BatchNormBatch: Sendable {
    /// `1 / sqrt(var + eps)` per channel (biased batch variance).
    public var inverseStandardDeviation: [Float]
    /// Batch mean per channel.
    public var mean: [Float]
    /// Unbiased batch variance per channel (`var · M / (M − 1)`), what the running variance takes.
    public var unbiasedVariance: [Float]
}

extension BatchNormalization {
    /// `y = γ·(x − mean_B)/sqrt(var_B + eps) + β` with the batch's own statistics (training mode),
    /// optionally followed by ReLU in the same pass.
    ///
    /// Returns the output and the batch statistics, which with the input are what the backward
    /// needs (x̂ is not stored: one output stream instead of two); the caller updates the running
    /// statistics with `updateRunningStatistics`. PyTorch counterpart: `F.batch_norm(training=True)`.
    /// - Throws: `KernelError` when the parameters do not have `C` entries, or when a channel has a
    ///   single value (torch: "expected more than 1 value per channel when training").
    public static func trainingForward(_ input: DenseTensor, weight: DenseTensor, bias: DenseTensor,
                                       epsilon: Float, epilogue: Convolution.Epilogue = .none) throws -> (output: DenseTensor, batch: BatchNormBatch) {
        let relu = epilogue.isReLU
        let op = "batch_norm"
        guard input.rank >= 2 else {
            throw KernelError.shapeMismatch(operation: op, operand: "input", expected: "[N, C, ...]", got: input.shape)
        }
        let n = input.shape[0], c = input.shape[1]
        guard weight.count == c, bias.count == c else {
            throw KernelError.shapeMismatch(operation: op, operand: "weight", expected: "[\(c)]", got: weight.shape)
        }
        let plane = input.shape.dropFirst(2).reduce(1, *)
        let m = n * plane
        guard m > 1 else {
            throw KernelError.invalidArgument(operation: op, message: "expected more than 1 value per channel when training, got input size \(input.shape) (torch refuses it too: train on batches of 2 or more)")
        }
        var mean = [Float](repeating: 0, count: c)
        var invstd = [Float](repeating: 0, count: c)
        var unbiased = [Float](repeating: 0, count: c)
        var out = [Float].uninitialized(input.count)
        input.values.withUnsafeBufferPointer { xb in
                out.withUnsafeMutableBufferPointer { yb in
                    mean.withUnsafeMutableBufferPointer { mb in
                        invstd.withUnsafeMutableBufferPointer { ib in
                            unbiased.withUnsafeMutableBufferPointer { ub in
                                guard let x = xb.baseAddress, let y = yb.baseAddress,
                                      let mp = mb.baseAddress, let ip = ib.baseAddress, let up = ub.baseAddress else { return }
                                let box = UncheckedSendable((x, y, mp, ip, up))
                                let avx512 = onAVX512
                                parallelForWork(c, elementsPerItem: m) { ch in
                                    let (x, y, mp, ip, up) = box.value
                                    // two passes in Double: the mean, then the centred sum of squares
                                    var s = 0.0
                                    for img in 0 ..< n { s += Double(planeSums(x + (img * c + ch) * plane, count: plane, centre: nil, avx512: avx512).sum) }
                                    let mu = s / Double(m)
                                    let muF = Float(mu)
                                    var q = 0.0
                                    for img in 0 ..< n {
                                        q += Double(planeSums(x + (img * c + ch) * plane, count: plane, centre: muF, avx512: avx512).squares)
                                    }
                                    let variance = q / Double(m)
                                    let inv = Float(1 / (variance + Double(epsilon)).squareRoot())
                                    mp[ch] = muF
                                    ip[ch] = inv
                                    up[ch] = Float(q / Double(m - 1))
                                    let gamma = weight.values[ch], beta = bias.values[ch]
                                    for img in 0 ..< n {
                                        let base = (img * c + ch) * plane
                                        if avx512 {
                                            BatchNormPlanes.normalizeAVX512(x + base, y + base, count: plane, mean: muF,
                                                                            invstd: inv, gamma: gamma, beta: beta, relu: relu)
                                        } else {
                                            BatchNormPlanes.normalize(x + base, y + base, count: plane, mean: muF,
                                                                      invstd: inv, gamma: gamma, beta: beta, relu: relu)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
        }
        let batch = BatchNormBatch(inverseStandardDeviation: invstd, mean: mean, unbiasedVariance: unbiased)
        return (DenseTensor(uncheckedShape: input.shape, values: out), batch)
    }

    /// `running = (1 − momentum)·running + momentum·batch` for the mean and the unbiased variance,
    /// as torch's batch norm updates its buffers in training mode.
    public static func updateRunningStatistics(mean runningMean: inout DenseTensor, variance runningVariance: inout DenseTensor,
                                               batch: BatchNormBatch, momentum: Float) {
        for i in 0 ..< runningMean.count {
            runningMean.values[i] = (1 - momentum) * runningMean.values[i] + momentum * batch.mean[i]
            runningVariance.values[i] = (1 - momentum) * runningVariance.values[i] + momentum * batch.unbiasedVariance[i]
        }
    }

    /// The gradients of a batch norm given `dOutput` and its input `x`: `dγ = Σ dy·x̂`, `dβ = Σ dy`,
    /// and `dx = γ·invstd/M · (M·dy − dβ − x̂·dγ)` with batch statistics (training), or
    /// `dx = γ·invstd·dy` when the statistics were the running ones (eval), where
    /// `x̂ = (x − mean)·invstd` is formed as `x` is read, bit for bit as the forward formed it (pass
    /// the statistics the forward normalised with: the batch's, or the running mean and its invstd).
    /// With `reluOutput` (the output of a ReLU that followed the batch norm), `dy` is first masked
    /// as the ReLU's backward masks it (`y ≤ 0 ? 0 : dy`), as it is read: no masked copy is made.
    /// With `reluAfterBias` instead (β of a training forward that applied the ReLU, `epilogue: .relu`),
    /// the mask is formed from the input: `x̂·γ + β ≤ 0` is, operation for operation, the forward's
    /// test, so the ReLU's output need not be read at all.
    /// PyTorch counterpart: `native_batch_norm_backward` (which also keeps the input, not x̂).
    /// - Throws: `KernelError.shapeMismatch` when the gradient's, the input's or the ReLU output's
    ///   shape differ, or the statistics do not have `C` entries.
    public static func backward(_ dOutput: DenseTensor, input: DenseTensor, mean: [Float], inverseStandardDeviation invstd: [Float],
                                weight: DenseTensor, batchStatistics: Bool, needs: GradientNeeds,
                                reluOutput: DenseTensor? = nil, reluAfterBias: DenseTensor? = nil) throws -> LayerGradients {
        try backward(dOutput, source: input, centre: mean, inverseStandardDeviation: invstd, weight: weight,
                     batchStatistics: batchStatistics, needs: needs, reluOutput: reluOutput, reluAfterBias: reluAfterBias)
    }

    /// `backward(_:input:mean:…)` given x̂ itself (`normalized`) instead of the input and mean.
    /// - Throws: `KernelError.shapeMismatch` as the other form does.
    public static func backward(_ dOutput: DenseTensor, normalized: DenseTensor, inverseStandardDeviation invstd: [Float],
                                weight: DenseTensor, batchStatistics: Bool, needs: GradientNeeds,
                                reluOutput: DenseTensor? = nil) throws -> LayerGradients {
        try backward(dOutput, source: normalized, centre: nil, inverseStandardDeviation: invstd, weight: weight,
                     batchStatistics: batchStatistics, needs: needs, reluOutput: reluOutput, reluAfterBias: nil)
    }

    /// Both forms: x̂ is `(source − centre)·invstd`, or `(source − 0)·1` (the source unchanged) without a centre.
    private static func backward(_ dOutput: DenseTensor, source: DenseTensor, centre: [Float]?, inverseStandardDeviation invstd: [Float],
                                 weight: DenseTensor, batchStatistics: Bool, needs: GradientNeeds,
                                 reluOutput: DenseTensor?, reluAfterBias: DenseTensor?) throws -> LayerGradients {
        let op = "batch_norm backward"
        guard dOutput.shape == source.shape, dOutput.rank >= 2 else {
            throw KernelError.shapeMismatch(operation: op, operand: "output gradient", expected: "\(source.shape)", got: dOutput.shape)
        }
        if let reluOutput, reluOutput.shape != dOutput.shape {
            throw KernelError.shapeMismatch(operation: op, operand: "relu output", expected: "\(source.shape)", got: reluOutput.shape)
        }
        let n = dOutput.shape[0], c = dOutput.shape[1]
        guard invstd.count == c, weight.count == c, centre.map({ $0.count == c }) ?? true, reluAfterBias.map({ $0.count == c }) ?? true else {
            throw KernelError.shapeMismatch(operation: op, operand: "statistics", expected: "[\(c)]",
                                            got: [centre?.count ?? invstd.count, invstd.count, weight.count])
        }
        if reluAfterBias != nil && !batchStatistics {
            throw KernelError.invalidArgument(operation: op, message: "a mask formed from the input needs the batch statistics' forward")
        }
        // the mask's values, or a copy-free empty array (never read) without one
        let mask = reluOutput?.values ?? []
        let masked = reluOutput != nil
        let plane = dOutput.shape.dropFirst(2).reduce(1, *)
        let m = Float(n * plane)
        var dGamma = [Float](repeating: 0, count: c)
        var dBeta = [Float](repeating: 0, count: c)
        var dx = [Float].uninitialized(needs.input ? dOutput.count : 0)
        dOutput.values.withUnsafeBufferPointer { gb in
          mask.withUnsafeBufferPointer { mb in
            source.values.withUnsafeBufferPointer { sb in
                dx.withUnsafeMutableBufferPointer { xb in
                    dGamma.withUnsafeMutableBufferPointer { dgb in
                        dBeta.withUnsafeMutableBufferPointer { dbb in
                            guard let gy = gb.baseAddress, let xs = sb.baseAddress, let dg = dgb.baseAddress,
                                  let db = dbb.baseAddress else { return }
                            // an empty array's baseAddress is not nil: without the need, no dx pointer
                            let box = UncheckedSendable((gy, xs, needs.input ? xb.baseAddress : nil, dg, db,
                                                         masked ? mb.baseAddress : nil))
                            let avx512 = onAVX512
                            parallelForWork(c, elementsPerItem: n * plane) { ch in
                                let (gy, xs, dxp, dg, db, relu) = box.value
                                let mu = centre?[ch] ?? 0, scale = centre == nil ? 1 : invstd[ch]
                                let affine = reluAfterBias.map { (gamma: weight.values[ch], beta: $0.values[ch]) }
                                var sg = 0.0, sb = 0.0
                                for img in 0 ..< n {
                                    let base = (img * c + ch) * plane
                                    let (pg, pb) = avx512
                                        ? BatchNormPlanes.gradientSumsAVX512(gy + base, xs + base, relu.map { $0 + base }, count: plane,
                                                                             centre: mu, xhatScale: scale, affineReLU: affine)
                                        : BatchNormPlanes.gradientSums(gy + base, xs + base, relu.map { $0 + base }, count: plane,
                                                                       centre: mu, xhatScale: scale, affineReLU: affine)
                                    sg += Double(pg)
                                    sb += Double(pb)
                                }
                                let gSum = Float(sg), bSum = Float(sb)
                                dg[ch] = gSum
                                db[ch] = bSum
                                guard let dxp else { return }
                                let k = weight.values[ch] * invstd[ch]
                                if batchStatistics {
                                    let meanB = bSum / m, meanG = gSum / m
                                    for img in 0 ..< n {
                                        let base = (img * c + ch) * plane
                                        if avx512 {
                                            BatchNormPlanes.inputGradientAVX512(gy + base, xs + base, relu.map { $0 + base }, dxp + base,
                                                                                count: plane, scale: k, meanB: meanB, meanG: meanG,
                                                                                centre: mu, xhatScale: scale, affineReLU: affine)
                                        } else {
                                            BatchNormPlanes.inputGradient(gy + base, xs + base, relu.map { $0 + base }, dxp + base,
                                                                          count: plane, scale: k, meanB: meanB, meanG: meanG,
                                                                          centre: mu, xhatScale: scale, affineReLU: affine)
                                        }
                                    }
                                } else {
                                    for img in 0 ..< n {
                                        let base = (img * c + ch) * plane
                                        if let relu {
                                            for i in 0 ..< plane { dxp[base + i] = k * (relu[base + i] <= 0 ? 0 : gy[base + i]) }
                                        } else {
                                            for i in 0 ..< plane { dxp[base + i] = k * gy[base + i] }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
          }
        }
        var result = LayerGradients()
        if needs.input { result.dInput = DenseTensor(uncheckedShape: dOutput.shape, values: dx) }
        if needs.weight { result.dWeight = DenseTensor(uncheckedShape: [c], values: dGamma) }
        if needs.bias { result.dBias = DenseTensor(uncheckedShape: [c], values: dBeta) }
        return result
    }

    /// True on CPUs with AVX-512F: the per-plane loops of batch norm and max pooling run as their
    /// AVX-512 builds (`Microkernel.isEnabled`, so tests can compare them with the portable ones).
    static var onAVX512: Bool { Microkernel.isEnabled }

    /// `BatchNormPlanes.sums` on this CPU's widest build.
    @inline(__always)
    static func planeSums(_ x: UnsafePointer<Float>, count: Int, centre: Float?, avx512: Bool) -> (sum: Float, squares: Float) {
        avx512 ? BatchNormPlanes.sumsAVX512(x, count: count, centre: centre) : BatchNormPlanes.sums(x, count: count, centre: centre)
    }

    /// `1/sqrt(var + eps)` per channel of the running variance: all an eval-mode batch norm's
    /// backward needs when γ does not train.
    public static func inverseStandardDeviation(runningVariance: DenseTensor, epsilon: Float) -> [Float] {
        runningVariance.values.map { 1 / ($0 + epsilon).squareRoot() }
    }

    /// `x̂` and invstd of an eval-mode batch norm (running statistics), for its backward.
    /// - Throws: `KernelError.shapeMismatch` when the statistics do not have `C` entries.
    public static func evalNormalized(_ input: DenseTensor, runningMean: DenseTensor, runningVariance: DenseTensor,
                                      epsilon: Float) throws -> (normalized: DenseTensor, inverseStandardDeviation: [Float]) {
        guard input.rank >= 2, runningMean.count == input.shape[1], runningVariance.count == input.shape[1] else {
            throw KernelError.shapeMismatch(operation: "batch_norm", operand: "running_mean", expected: "[C]", got: runningMean.shape)
        }
        let c = input.shape[1]
        let plane = input.shape.dropFirst(2).reduce(1, *)
        let invstd = inverseStandardDeviation(runningVariance: runningVariance, epsilon: epsilon)
        var xh = input.values
        for p in 0 ..< input.shape[0] * c {
            let ch = p % c
            let mu = runningMean.values[ch], k = invstd[ch]
            for i in p * plane ..< (p + 1) * plane { xh[i] = (xh[i] - mu) * k }
        }
        return (DenseTensor(uncheckedShape: input.shape, values: xh), invstd)
    }
}
