// N images, C channels, H rows, W columns (NCHW).

extension Elementwise {
    /// `dInput` of ReLU from its output: 0 where `y ≤ 0`, else `dy`, so a NaN output passes `dy`
    /// on (torch's `threshold_backward`: `y <= 0 ? 0 : dy`).
    /// - Throws: `KernelError.shapeMismatch` when the shapes differ.
    public static func reluBackward(_ dOutput: DenseTensor, output: DenseTensor) throws -> DenseTensor {
        guard dOutput.shape == output.shape else {
            throw KernelError.shapeMismatch(operation: "relu backward", operand: "output gradient", expected: "\(output.shape)", got: dOutput.shape)
        }
        // one pass into a fresh buffer (masking a copy of dy in place would read and write it twice)
        var dx = [Float].uninitialized(dOutput.count)
        dx.withUnsafeMutableBufferPointer { d in
            dOutput.values.withUnsafeBufferPointer { g in
                output.values.withUnsafeBufferPointer { y in
                    guard let dp = d.baseAddress, let gp = g.baseAddress, let yp = y.baseAddress else { return }
                    let box = UncheckedSendable((dp, gp, yp))
                    let count = d.count, slice = 1 << 16
                    parallelFor((count + slice - 1) / slice) { part in
                        let (dp, gp, yp) = box.value
                        // sixteen lanes with a select: a branch per element mispredicts on half of a ReLU's mask
                        typealias V = SIMD16<Float>
                        var i = part * slice
                        let end = min(count, (part + 1) * slice)
                        while i + 16 <= end {
                            var d = UnsafeRawPointer(gp + i).loadUnaligned(as: V.self)
                            d.replace(with: 0, where: UnsafeRawPointer(yp + i).loadUnaligned(as: V.self) .<= 0)
                            UnsafeMutableRawPointer(dp + i).storeBytes(of: d, as: V.self)
                            i += 16
                        }
                        while i < end {
                            dp[i] = yp[i] <= 0 ? 0 : gp[i]
                            i += 1
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: dOutput.shape, values: dx)
    }

    /// `x · mask` where the mask holds 0 or `1/(1 − p)` per element: dropout's forward and, with the
    /// same mask, its backward. - Throws: `KernelError.shapeMismatch` when the counts differ.
    public static func multiply(_ input: consuming DenseTensor, mask: [Float]) throws -> DenseTensor {
        guard input.count == mask.count else {
            throw KernelError.shapeMismatch(operation: "dropout", operand: "mask", expected: "\(input.count) elements", got: [mask.count])
        }
        var out = consume input
        out.values.withUnsafeMutableBufferPointer { o in
            mask.withUnsafeBufferPointer { m in
                for i in 0 ..< o.count { o[i] *= m[i] }
            }
        }
        return out
    }

    /// The inverse of `concatenateChannels`: `dOutput` cut along channels into parts of the given
    /// channel counts. - Throws: `KernelError.shapeMismatch` when the counts do not add up.
    public static func splitChannels(_ dOutput: DenseTensor, counts: [Int]) throws -> [DenseTensor] {
        guard dOutput.rank >= 2, counts.reduce(0, +) == dOutput.shape[1] else {
            throw KernelError.shapeMismatch(operation: "cat backward", operand: "output gradient",
                                            expected: "\(counts.reduce(0, +)) channels", got: dOutput.shape)
        }
        let n = dOutput.shape[0], total = dOutput.shape[1]
        let inner = dOutput.shape.dropFirst(2).reduce(1, *)
        var parts: [DenseTensor] = []
        var offset = 0
        for k in counts {
            let run = k * inner
            var v = [Float].uninitialized(n * run)
            // one block copy per image (an element loop with bounds checks costs several times more
            // on SegNet's full-resolution skips)
            v.withUnsafeMutableBufferPointer { vb in
                dOutput.values.withUnsafeBufferPointer { gb in
                    guard let dst = vb.baseAddress, let src = gb.baseAddress, run > 0 else { return }
                    for img in 0 ..< n { (dst + img * run).update(from: src + (img * total + offset) * inner, count: run) }
                }
            }
            var shape = dOutput.shape
            shape[1] = k
            parts.append(DenseTensor(uncheckedShape: shape, values: v))
            offset += k
        }
        return parts
    }
}
