// Weights are [C_out, C_in, 3, 3]; a channel pair is one (output, input) channel's 3×3 kernel.

/// A training step's Winograd weight transform (`U = G·g·Gᵀ` per channel pair, α×α values) written
/// straight into the microkernel's packed matrices `U_ξ` (one per point `ξ`): eight rows' kernels
/// are brought together by in-register transposes, so the nine taps of one column for eight rows
/// are nine vectors and each point's eight values are one store into its panel column. The
/// arithmetic is in Double with the products and sums of the scalar transform, in the same order
/// (no fused multiply-add), less the products by G's zeros and the products a row shares with its
/// mirror (`−g·x` is `g·x` negated exactly): the same floats, a zero's sign aside where a
/// kernel's taps are zeros.
public enum WinogradWeightPanels {
    typealias D = SIMD8<Double>
    typealias F = SIMD8<Float>

    /// Rows `firstRow ..< +16` (fewer at the end; the padding rows of a last partial panel get +0,
    /// as the element-by-element packer writes) of the transformed weight into `matrices` (α² of
    /// them, made by `PackedMatrix(unfilledRows:columns:)`). `g` is `G` row-major (α×3).
    /// Not `flipped`: `U_ξ` is `C_out × C_in`, the pair (row `o`, column `c`) the kernel `weight[o, c]`.
    /// `flipped`: `U_ξ` is `C_in × C_out`, the pair (row `c`, column `o`) the kernel `weight[o, c]`
    /// turned by 180° (the input gradient's convolution of a stride-1 layer).
    public static func transform(weight: UnsafePointer<Float>, outputChannels cout: Int, inputChannels cin: Int,
                                 flipped: Bool, firstRow r0: Int, g gm: [Double], into matrices: [PackedMatrix]) {
        let alpha = gm.count / 3
        let (rows, columns) = flipped ? (cin, cout) : (cout, cin)
        let live = min(16, rows - r0)
        guard live > 0, matrices.count == alpha * alpha else { return }
        let starts = matrices.map(\.storageStart)
        let layout = matrices[0]
        let shape = Shape(gm)
        withUnsafeTemporaryAllocation(byteCount: (flipped ? 16 * 16 : 16 * 9 * cin) * 4 + 64 * (9 + 3 * alpha), alignment: 64) { raw in
            guard let base = raw.baseAddress else { return }
            let panelFloats = flipped ? 16 * 16 : 16 * 9 * cin
            let panels = base.bindMemory(to: Float.self, capacity: panelFloats)
            let k = (base + panelFloats * 4).bindMemory(to: D.self, capacity: 9 + 3 * alpha)
            let r = k + 9
            // the eight values of (rows 8·panel …, column) for every point, from k's nine taps
            @inline(__always) func finish(panel: Int, column: Int) {
                // a last partial panel's padding rows hold +0 (G's negative entries would make −0 of them)
                let padding = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) .>= SIMD8<Int32>(repeating: Int32(min(8, rows - panel * 8)))
                let partial = any(padding)
                let offset = layout.panelColumnOffset(panel: panel, column: column)
                @inline(__always) func store(_ point: Int, _ v: D) {
                    let f = partial ? F(v).replacing(with: 0, where: padding) : F(v)
                    UnsafeMutableRawPointer(starts[point] + offset).storeBytes(of: f, as: F.self)
                }
                // r = G·k (α×3), then U = r·Gᵀ (α×α), as `Winograd.transformedPairs`
                switch shape {
                case .f4x4:
                    let c0 = Shape.f4x4(k[0], k[3], k[6]), c1 = Shape.f4x4(k[1], k[4], k[7]), c2 = Shape.f4x4(k[2], k[5], k[8])
                    @inline(__always) func row(_ i: Int, _ u: (D, D, D, D, D, D)) {
                        store(6 * i, u.0); store(6 * i + 1, u.1); store(6 * i + 2, u.2)
                        store(6 * i + 3, u.3); store(6 * i + 4, u.4); store(6 * i + 5, u.5)
                    }
                    row(0, Shape.f4x4(c0.0, c1.0, c2.0))
                    row(1, Shape.f4x4(c0.1, c1.1, c2.1))
                    row(2, Shape.f4x4(c0.2, c1.2, c2.2))
                    row(3, Shape.f4x4(c0.3, c1.3, c2.3))
                    row(4, Shape.f4x4(c0.4, c1.4, c2.4))
                    row(5, Shape.f4x4(c0.5, c1.5, c2.5))
                case .f2x2:
                    let c0 = Shape.f2x2(k[0], k[3], k[6]), c1 = Shape.f2x2(k[1], k[4], k[7]), c2 = Shape.f2x2(k[2], k[5], k[8])
                    @inline(__always) func row(_ i: Int, _ u: (D, D, D, D)) {
                        store(4 * i, u.0); store(4 * i + 1, u.1); store(4 * i + 2, u.2); store(4 * i + 3, u.3)
                    }
                    row(0, Shape.f2x2(c0.0, c1.0, c2.0))
                    row(1, Shape.f2x2(c0.1, c1.1, c2.1))
                    row(2, Shape.f2x2(c0.2, c1.2, c2.2))
                    row(3, Shape.f2x2(c0.3, c1.3, c2.3))
                case .general:
                    for i in 0 ..< alpha {
                        for j in 0 ..< 3 { r[3 * i + j] = gm[3 * i] * k[j] + gm[3 * i + 1] * k[3 + j] + gm[3 * i + 2] * k[6 + j] }
                    }
                    for i in 0 ..< alpha {
                        for j in 0 ..< alpha {
                            store(alpha * i + j, r[3 * i] * gm[3 * j] + r[3 * i + 1] * gm[3 * j + 1] + r[3 * i + 2] * gm[3 * j + 2])
                        }
                    }
                }
            }
            if !flipped {
                // sixteen output channels' kernels as 8-row panels: row o, tap (c, t) at (o / 8)·8·9C_in + (9c + t)·8 + o % 8
                TransposedPanels.packRows(weight + r0 * 9 * cin, rowStride: 9 * cin, rows: live, count: 9 * cin, column: 0,
                                          depth: 9 * cin, into: panels)
                for half in 0 ..< (live + 7) / 8 {
                    let source = panels + half * 8 * 9 * cin
                    for c in 0 ..< cin {
                        for t in 0 ..< 9 { k[t] = D(UnsafeRawPointer(source + (9 * c + t) * 8).load(as: F.self)) }
                        finish(panel: r0 / 8 + half, column: c)
                    }
                }
                return
            }
            // flipped: the kernels of input channels r0 ..< r0 + 16 for one output channel are 144
            // adjacent floats; one 16×16 transpose of rows 9 floats apart gives tap t of each in lane s
            let total = cout * cin * 9
            for o in 0 ..< columns {
                let first = (o * cin + r0) * 9
                @inline(__always) func row(_ s: Int) -> SIMD16<Float> {
                    if s >= live { return SIMD16() }
                    let at = first + 9 * s
                    if at + 16 <= total { return UnsafeRawPointer(weight + at).loadUnaligned(as: SIMD16<Float>.self) }
                    var v = SIMD16<Float>()
                    for t in 0 ..< 9 { v[t] = weight[at + t] }
                    return v
                }
                @inline(__always) func put(_ v: SIMD16<Float>, _ t: Int) {
                    if t < 9 { UnsafeMutableRawPointer(panels + 16 * t).storeBytes(of: v, as: SIMD16<Float>.self) }
                }
                TransposedPanels.transpose16(row, put)
                for half in 0 ..< (live + 7) / 8 {
                    // turned by 180°: tap t of the flipped kernel is tap 8 − t of the kernel
                    for t in 0 ..< 9 { k[t] = D(UnsafeRawPointer(panels + 16 * (8 - t) + 8 * half).load(as: F.self)) }
                    finish(panel: r0 / 8 + half, column: o)
                }
            }
        }
    }

    /// `G·(a, b, c)` for the two `G` the convolutions use, without G's zero products and with the
    /// products a row shares with its mirror row computed once; any other `G` row by row.
    enum Shape {
        /// F(4×4, 3×3): rows (¼, 0, 0), (−⅙, ∓⅙, −⅙), (1/24, ±1/12, ⅙), (0, 0, 1).
        case f4x4
        /// F(2×2, 3×3): rows (1, 0, 0), (½, ±½, ½), (0, 0, 1).
        case f2x2
        case general

        init(_ g: [Double]) {
            let sixth = 1.0 / 6, f4x4: [Double] = [1.0 / 4, 0, 0, -sixth, -sixth, -sixth, -sixth, sixth, -sixth,
                                                   1.0 / 24, 1.0 / 12, sixth, 1.0 / 24, -1.0 / 12, sixth, 0, 0, 1]
            let f2x2: [Double] = [1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1]
            if g == f4x4 {
                self = .f4x4
            } else if g == f2x2 {
                self = .f2x2
            } else {
                self = .general
            }
        }

        /// `G·(a, b, c)` for F(4×4)'s `G`, summed as the scalar transform sums `(g_i0·a + g_i1·b) + g_i2·c`
        /// (`x + (−y)` is `x − y`; a zero product added changes at most a zero's sign).
        @inline(__always)
        static func f4x4(_ a: D, _ b: D, _ c: D) -> (D, D, D, D, D, D) {
            let p0 = a * (-1.0 / 6), p1 = b * (-1.0 / 6), p2 = c * (-1.0 / 6)
            let q0 = a * (1.0 / 24), q1 = b * (1.0 / 12), q2 = c * (1.0 / 6)
            return (a * (1.0 / 4), p0 + p1 + p2, p0 - p1 + p2, q0 + q1 + q2, q0 - q1 + q2, c)
        }

        /// `G·(a, b, c)` for F(2×2)'s `G`, as `f4x4`.
        @inline(__always)
        static func f2x2(_ a: D, _ b: D, _ c: D) -> (D, D, D, D) {
            let h0 = a * 0.5, h1 = b * 0.5, h2 = c * 0.5
            return (a, h0 + h1 + h2, h0 - h1 + h2, c)
        }
    }
}
