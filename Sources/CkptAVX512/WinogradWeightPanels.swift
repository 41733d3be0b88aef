// Weights are [C_out, C_in, 3, 3]; a channel pair is one (output, input) channel's 3×3 kernel.

/// A training step's Winograd weight transform (`U = G·g·Gᵀ` per channel pair, α×α values) written
/// straight into the microkernel's packed matrices `U_ξ` (`C_out × C_in`, one per point `ξ`):
/// sixteen output channels' kernels are first packed into 8-row panels by in-register transposes
/// (`TransposedPanels.packRows`, row `o`, tap `(c, t)` at `(o / 8)·8·9C_in + (9c + t)·8 + o % 8`),
/// so the nine taps of one input channel for eight output channels are nine adjacent vectors, and
/// each point's eight values are one store into its panel column. The arithmetic is in Double, the
/// same products and sums in the same order as the scalar transform's (no fused multiply-add): the
/// same floats.
public enum WinogradWeightPanels {
    /// Output channels `firstOutputChannel ..< +16` (fewer at the end; the padding rows of a last
    /// partial panel get +0, as the element-by-element packer writes) of `weight` transformed into `matrices` (α² of them, each `C_out × C_in`,
    /// made by `PackedMatrix(unfilledRows:columns:)`). `g` is `G` row-major (α×3).
    public static func transform(weight: UnsafePointer<Float>, outputChannels cout: Int, inputChannels cin: Int,
                                 firstOutputChannel o0: Int, g gm: [Double], into matrices: [PackedMatrix]) {
        typealias D = SIMD8<Double>
        typealias F = SIMD8<Float>
        let alpha = gm.count / 3
        let depth = 9 * cin
        let live = min(16, cout - o0)
        guard live > 0, matrices.count == alpha * alpha else { return }
        let starts = matrices.map(\.storageStart)
        let layout = matrices[0]
        withUnsafeTemporaryAllocation(byteCount: 16 * depth * 4 + 64 * (9 + 3 * alpha), alignment: 64) { raw in
            guard let base = raw.baseAddress else { return }
            let panels = base.bindMemory(to: Float.self, capacity: 16 * depth)
            let k = (base + 16 * depth * 4).bindMemory(to: D.self, capacity: 9 + 3 * alpha)
            let r = k + 9
            TransposedPanels.packRows(weight + o0 * depth, rowStride: depth, rows: live, count: depth, column: 0, depth: depth,
                                      into: panels)
            for half in 0 ..< (live + 7) / 8 {
                let panel = o0 / 8 + half
                let source = panels + half * 8 * depth
                // a last partial panel's padding rows hold zeros (+0: G's negative entries would make −0 of them)
                let padding = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) .>= SIMD8<Int32>(repeating: Int32(min(8, cout - panel * 8)))
                let partial = any(padding)
                for c in 0 ..< cin {
                    for t in 0 ..< 9 {
                        k[t] = D(UnsafeRawPointer(source + (9 * c + t) * 8).load(as: F.self))
                    }
                    // r = G·k (α×3), then U = r·Gᵀ (α×α), as `Winograd.transformedPairs`
                    for i in 0 ..< alpha {
                        for j in 0 ..< 3 {
                            r[3 * i + j] = gm[3 * i] * k[j] + gm[3 * i + 1] * k[3 + j] + gm[3 * i + 2] * k[6 + j]
                        }
                    }
                    let offset = layout.panelColumnOffset(panel: panel, column: c)
                    for i in 0 ..< alpha {
                        for j in 0 ..< alpha {
                            let v = r[3 * i] * gm[3 * j] + r[3 * i + 1] * gm[3 * j + 1] + r[3 * i + 2] * gm[3 * j + 2]
                            let f = partial ? F(v).replacing(with: 0, where: padding) : F(v)
                            UnsafeMutableRawPointer(starts[alpha * i + j] + offset).storeBytes(of: f, as: F.self)
                        }
                    }
                }
            }
        }
    }
}
