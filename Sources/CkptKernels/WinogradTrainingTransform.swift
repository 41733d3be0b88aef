internal import CkptAVX512

// Weights are [C_out, C_in, 3, 3]; a channel pair is one (output, input) channel's 3×3 kernel.

extension Winograd4x4 {
    /// `isFaster` for a weight transformed by `trainingTransform` for one call (a training step):
    /// the transform must be paid back by the product, which takes at least 2048 output pixels
    /// over the batch (`paysForTransform`'s 4096 was set by the scalar transform). ResNet-18's
    /// layer3 at batch 16 (3136 pixels) gains. Layer4 (784 pixels, 512 channels) stays on the
    /// panel kernel: alone its forward took 52 → 36 ms of CPU on F(4×4), transform included, but
    /// whole steps did not show the gain through the noise of a shared machine, its 36 transformed
    /// matrices (38 MB a layer, cached by the layer) raised peak RSS by ~120 MB, and at 512 pixels
    /// segnet's 128-channel 16×16 layers at batch 2 took it and three AdamW steps of the segnet
    /// golden (`OptimizerStepGoldenTests`) left torch's bound (F(4×4) rounds more than the direct product).
    /// 64-channel layers take it from 16384 pixels (1024 tiles): ResNet-18's layer1 at batch 16
    /// (50176), SegNet's 160×160 layers at batch 4 (102400); their rounding is that of the 128- and
    /// 256-channel layers (about 5e-6 of the largest output). Smaller planes stay direct: at 2048
    /// pixels three AdamW steps of the segnet golden (64-channel 32×32 layers at batch 2, batch
    /// statistics over 2048 values a channel) left torch's bound with them on F(4×4).
    public static func paysForTrainingTransform(_ g: Conv2dGeometry, images: Int, height: Int, width: Int) -> Bool {
        let pixels = images * height * width
        return isFaster(g, images: images, height: height, width: width) && pixels >= 2048
            || Winograd.isApplicable(g) && g.inputChannels >= 64 && g.outputChannels >= 64 && pixels >= 16384
    }

    /// `paysForTrainingTransform` for a stride-1 convolution's input gradient (`conv2d(dY, W')`,
    /// `Convolution.inputGradientByConvolution`), which takes F(4×4) from 64 channels in and out
    /// rather than 128: ResNet-18's layer1 at batch 16 (50176 pixels), 42 → 25 ms of CPU per
    /// layer. Its rounding there is that of the 128- and 256-channel layers already on F(4×4)
    /// (about 5e-6 of the largest output against 4e-7 for the direct product, at 64 channels as
    /// at 128). Below 16384 pixels those layers' forward stays on the direct product
    /// (`paysForTrainingTransform`): on F(4×4) its rounding reaches every later activation, and
    /// three AdamW steps of the segnet golden (64-channel 32×32 layers at batch 2, 2048 pixels)
    /// left torch's bound; with only `dInput` on F(4×4) there every training golden holds.
    public static func paysForInputGradientTransform(_ g: Conv2dGeometry, images: Int, height: Int, width: Int) -> Bool {
        Winograd.isApplicable(g) && g.inputChannels >= 64 && g.outputChannels >= 64 && images * height * width >= 2048
            && !(Microkernel.isEnabled && hasFewTiles(g, images: images, height: height, width: width))
    }

    /// `transform(weight:)` for a weight that changes every step (training): the same `U = G·g·Gᵀ`
    /// in double precision (the same products and sums in the same order, no fused multiply-add;
    /// G's zero products skipped), eight channel pairs per vector, sixteen output channels per job
    /// dealt to the cores, written straight into the microkernel's packed panels
    /// (`WinogradWeightPanels`), where `transform` takes one pair at a time (0.3 µs each: 73 ms for
    /// a 512×512 layer, paid twice per step, for the forward and for the input gradient).
    /// - Throws: `KernelError.shapeMismatch` for a weight that is not `[C_out, C_in, 3, 3]`.
    public static func trainingTransform(weight: DenseTensor) throws -> Winograd4x4Weights {
        try trainingTransform(weight: weight, flipped: false)
    }

    /// `trainingTransform` of the weight of a stride-1 convolution's input gradient (`conv2d(dY, W')`
    /// with `W'[c, o, i, j] = W[o, c, 2 − i, 2 − j]`, `Convolution.inputGradientByConvolution`) made
    /// from `weight` itself: the turned, transposed weight is never written out.
    /// - Throws: `KernelError.shapeMismatch` for a weight that is not `[C_out, C_in, 3, 3]`.
    public static func trainingTransform(flipping weight: DenseTensor) throws -> Winograd4x4Weights {
        try trainingTransform(weight: weight, flipped: true)
    }

    static func trainingTransform(weight: DenseTensor, flipped: Bool) throws -> Winograd4x4Weights {
        let (u, packed, rows, columns) = try Winograd.transformedForTraining(
            weight, flipped: flipped, g: [1.0 / 4, 0, 0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
                                          1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6, 0, 0, 1])
        return Winograd4x4Weights(values: u, outputChannels: rows, inputChannels: columns, packed: packed)
    }
}

extension Winograd {
    /// `transform(weight:)` (F(2×2, 3×3)) for a weight that changes every step, on the vectorised
    /// path of `Winograd4x4.trainingTransform`: bit for bit the same.
    /// - Throws: `KernelError.shapeMismatch` for a weight that is not `[C_out, C_in, 3, 3]`.
    public static func trainingTransform(weight: DenseTensor) throws -> WinogradWeights {
        let (u, packed, cout, cin) = try transformedForTraining(weight, flipped: false, g: [1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1])
        return WinogradWeights(values: u, outputChannels: cout, inputChannels: cin, packed: packed)
    }

    /// The transformed `[C_out, C_in, 3, 3]` weight (`flipped`: its input gradient's weight
    /// `[C_in, C_out, 3, 3]`, each kernel turned by 180°) with the rows and columns of its matrices:
    /// packed for the microkernel as it is computed (`WinogradWeightPanels`, sixteen rows per job,
    /// the jobs dealt to the cores) when the kernel is in use, else `transformedPairs`'s values.
    /// - Throws: `KernelError.shapeMismatch` for any other shape.
    static func transformedForTraining(_ weight: DenseTensor, flipped: Bool, g: [Double]) throws
        -> (u: [Float], packed: PackedWeights?, rows: Int, columns: Int) {
        guard weight.rank == 4, weight.shape[2] == 3, weight.shape[3] == 3 else {
            throw KernelError.shapeMismatch(operation: "winograd", operand: "weight", expected: "[C_out, C_in, 3, 3]", got: weight.shape)
        }
        let (cout, cin) = (weight.shape[0], weight.shape[1])
        let (rows, columns) = flipped ? (cin, cout) : (cout, cin)
        guard Microkernel.isEnabled, cout > 0, cin > 0 else {
            let values = flipped ? Convolution.flippedTransposed(weight, groups: 1).values : weight.values
            return (transformedPairs(values, pairs: cout * cin, g: g), nil, rows, columns)
        }
        let points = g.count / 3 * (g.count / 3)
        let matrices = (0 ..< points).map { _ in PackedMatrix(unfilledRows: rows, columns: columns) }
        weight.values.withUnsafeBufferPointer { wb in
            guard let w = wb.baseAddress else { return }
            let box = UncheckedSendable(w)
            parallelFor((rows + 15) / 16, minimumWork: cout * cin >= 4096 ? 2 : Int.max) { job in
                WinogradWeightPanels.transform(weight: box.value, outputChannels: cout, inputChannels: cin, flipped: flipped,
                                               firstRow: job * 16, g: g, into: matrices)
            }
        }
        return ([], PackedWeights(matrices: matrices, rows: rows, columns: columns), rows, columns)
    }

    /// `U[ξ·pairs + p]` for every pair `p` of the 3×3 kernels in `values`: `r = G·k` (α×3), then
    /// `U = r·Gᵀ` (α×α), for `g` the row-major α×3 matrix `G`, as `transformedWeights` computes them.
    static func transformedPairs(_ values: [Float], pairs: Int, g gm: [Double]) -> [Float] {
        typealias V = SIMD8<Double>
        let alpha = gm.count / 3
        var u = [Float].uninitialized(alpha * alpha * pairs)
        let blocks = (pairs + 7) / 8
        values.withUnsafeBufferPointer { wb in
            u.withUnsafeMutableBufferPointer { ub in
                guard let w = wb.baseAddress, let out = ub.baseAddress else { return }
                let box = UncheckedSendable((w, out))
                // 512 pairs (18 KiB of kernels) per job
                let perJob = 64
                parallelFor((blocks + perJob - 1) / perJob, minimumWork: blocks >= 2 * perJob ? 2 : Int.max) { job in
                    let (w, out) = box.value
                    withUnsafeTemporaryAllocation(of: V.self, capacity: 9 + 3 * alpha) { scratch in
                        // k: the nine taps of eight pairs; r = G·k (α×3)
                        guard let k = scratch.baseAddress else { return }
                        let r = k + 9
                        for block in job * perJob ..< min(blocks, (job + 1) * perJob) {
                            let p0 = block * 8, lanes = min(8, pairs - p0)
                            for t in 0 ..< 9 { k[t] = V() }
                            for l in 0 ..< lanes {
                                for t in 0 ..< 9 { k[t][l] = Double(w[(p0 + l) * 9 + t]) }
                            }
                            for i in 0 ..< alpha {
                                for j in 0 ..< 3 {
                                    r[3 * i + j] = gm[3 * i] * k[j] + gm[3 * i + 1] * k[3 + j] + gm[3 * i + 2] * k[6 + j]
                                }
                            }
                            for i in 0 ..< alpha {
                                for j in 0 ..< alpha {
                                    let v = r[3 * i] * gm[3 * j] + r[3 * i + 1] * gm[3 * j + 1] + r[3 * i + 2] * gm[3 * j + 2]
                                    let f = SIMD8<Float>(v)
                                    let dst = out + (alpha * i + j) * pairs + p0
                                    if lanes == 8 {
                                        UnsafeMutableRawPointer(dst).storeBytes(of: f, as: SIMD8<Float>.self)
                                    } else {
                                        for l in 0 ..< lanes { dst[l] = f[l] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return u
    }
}
