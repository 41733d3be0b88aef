// Weights are [C_out, C_in, 3, 3]; a channel pair is one (output, input) channel's 3×3 kernel.

extension Winograd4x4 {
    /// `isFaster` for a weight transformed by `trainingTransform` for one call (a training step):
    /// the transform must be paid back by the product, which takes at least 2048 output pixels
    /// over the batch (`paysForTransform`'s 4096 was set by the scalar transform). ResNet-18's
    /// layer3 at batch 16 (3136 pixels) gains: its step −2.5 % of CPU (perf, against the
    /// unchanged weight-gradient GEMM, two rounds each); layer4 (784 pixels) stays on the panel kernel.
    public static func paysForTrainingTransform(_ g: Conv2dGeometry, images: Int, height: Int, width: Int) -> Bool {
        isFaster(g, images: images, height: height, width: width) && images * height * width >= 2048
    }

    /// `transform(weight:)` for a weight that changes every step (training): the same `U = G·g·Gᵀ`
    /// in double precision, bit for bit (the same products and sums in the same order, no fused
    /// multiply-add), eight channel pairs per vector and the pairs dealt to the cores, where
    /// `transform` takes one pair at a time (0.3 µs each: 73 ms for a 512×512 layer, paid twice
    /// per step, for the forward and for the input gradient).
    /// - Throws: `KernelError.shapeMismatch` for a weight that is not `[C_out, C_in, 3, 3]`.
    public static func trainingTransform(weight: DenseTensor) throws -> Winograd4x4Weights {
        let (u, cout, cin) = try Winograd.transformedForTraining(weight, g: [1.0 / 4, 0, 0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
                                                                             1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6, 0, 0, 1])
        let packed = Microkernel.pack(u, groups: 36, rows: cout, columns: cin)
        return Winograd4x4Weights(values: packed == nil ? u : [], outputChannels: cout, inputChannels: cin, packed: packed)
    }
}

extension Winograd {
    /// `transform(weight:)` (F(2×2, 3×3)) for a weight that changes every step, on the vectorised
    /// path of `Winograd4x4.trainingTransform`: bit for bit the same.
    /// - Throws: `KernelError.shapeMismatch` for a weight that is not `[C_out, C_in, 3, 3]`.
    public static func trainingTransform(weight: DenseTensor) throws -> WinogradWeights {
        let (u, cout, cin) = try transformedForTraining(weight, g: [1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1])
        let packed = Microkernel.pack(u, groups: 16, rows: cout, columns: cin)
        return WinogradWeights(values: packed == nil ? u : [], outputChannels: cout, inputChannels: cin, packed: packed)
    }

    /// `transformedPairs` of a `[C_out, C_in, 3, 3]` weight with its channel counts.
    /// - Throws: `KernelError.shapeMismatch` for any other shape.
    static func transformedForTraining(_ weight: DenseTensor, g: [Double]) throws -> (u: [Float], outputChannels: Int, inputChannels: Int) {
        guard weight.rank == 4, weight.shape[2] == 3, weight.shape[3] == 3 else {
            throw KernelError.shapeMismatch(operation: "winograd", operand: "weight", expected: "[C_out, C_in, 3, 3]", got: weight.shape)
        }
        return (transformedPairs(weight.values, pairs: weight.shape[0] * weight.shape[1], g: g), weight.shape[0], weight.shape[1])
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
