// N images, C channels, H rows, W columns (NCHW); weights are [C_out, C_in, 3, 3].

/// 3×3 weights transformed for `Winograd`: `U[ξ] = G·g·Gᵀ` laid out as 16 matrices `[C_out, C_in]`.
public struct WinogradWeights: Sendable {
    /// The 16 transformed matrices, `ξ`-major; empty when `packed` holds them.
    let values: [Float]
    /// Output channels.
    public let outputChannels: Int
    /// Input channels.
    public let inputChannels: Int
    /// The 16 matrices packed for `Microkernel`, when it is in use.
    let packed: PackedWeights?
}

/// 3×3, stride-1, undilated, ungrouped convolution by Winograd's minimal filtering F(2×2, 3×3):
/// 16 GEMMs of `[C_out, C_in] · [C_in, tiles]` replace one GEMM of `[C_out, 9·C_in] · [9·C_in, H·W]`,
/// 2.25× fewer multiplications. Rounding differs from im2col by a few float32 ulps of the
/// partial sums (the transforms only add and halve).
///
/// Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). Forward caches
/// nothing; its backward is the im2col convolution's.
public enum Winograd {
    /// True when `geometry` is a convolution this kernel computes.
    public static func isApplicable(_ g: Conv2dGeometry) -> Bool {
        g.kernelSize == (3, 3) && g.stride == (1, 1) && g.dilation == (1, 1) && g.groups == 1 && g.outputPadding == (0, 0)
    }

    /// True when Winograd is measured to beat im2col for this layer on an input plane of
    /// `height × width` (AVX-512 OpenBLAS, 2 cores): ≥256 channels on planes from ~10×10 to 28×28
    /// (5–17 % faster); narrower layers and larger planes lose to the transforms' memory traffic.
    /// Never with the microkernel: its implicit GEMM beat F(2×2) there (ResNet-34's 64-channel
    /// layers: 117 against 139 ms at batch 8), and F(4×4) takes the wide layers, except where
    /// `isFasterOnMicrokernel`.
    public static func isFaster(_ g: Conv2dGeometry, height: Int, width: Int) -> Bool {
        !Microkernel.isEnabled && isApplicable(g) && g.inputChannels >= 256 && g.outputChannels >= 256
            && height * width >= 100 && height * width <= 28 * 28
    }

    /// True when F(2×2) on the microkernel is measured to beat F(4×4) and the implicit GEMM for a
    /// weight transformed once and kept (eval): where F(4×4) has few tiles (`Winograd4x4.hasFewTiles`,
    /// ResNet's 7×7 layers and SegNet's 10×10 ones at batch 1). F(2×2) reads 16 transformed
    /// matrices instead of 36 and multiplies them by three or four times the tiles, so its
    /// products run on wider kernels rather than streaming 17–38 MB of weights through the
    /// narrow ones; it does 1.7× fewer multiplications than the implicit GEMM.
    public static func isFasterOnMicrokernel(_ g: Conv2dGeometry, images: Int, height: Int, width: Int) -> Bool {
        Microkernel.isEnabled && Winograd4x4.hasFewTiles(g, images: images, height: height, width: width)
    }

    /// `U = G·g·Gᵀ` for every (output, input) channel pair of a `[C_out, C_in, 3, 3]` weight,
    /// computed in double precision.
    /// - Throws: `KernelError.shapeMismatch` for any other weight shape.
    public static func transform(weight: DenseTensor) throws -> WinogradWeights {
        guard weight.rank == 4, weight.shape[2] == 3, weight.shape[3] == 3 else {
            throw KernelError.shapeMismatch(operation: "winograd", operand: "weight", expected: "[C_out, C_in, 3, 3]", got: weight.shape)
        }
        let u = transformedWeights(weight, g: [1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1])
        let cout = weight.shape[0], cin = weight.shape[1]
        let packed = Microkernel.pack(u, groups: 16, rows: cout, columns: cin)
        return WinogradWeights(values: packed == nil ? u : [], outputChannels: cout, inputChannels: cin, packed: packed)
    }

    /// The shapes of a Winograd forward, `(N, C_in, H, W, C_out, H_out, W_out)`, after checking the
    /// geometry, the input against the transformed weights' channels, and the bias.
    /// - Throws: `KernelError` naming what does not fit.
    static func checkedShapes(_ input: DenseTensor, inputChannels: Int, outputChannels cout: Int, bias: DenseTensor?,
                              geometry g: Conv2dGeometry) throws -> (Int, Int, Int, Int, Int, Int, Int) {
        let op = "winograd"
        guard isApplicable(g) else { throw KernelError.invalidArgument(operation: op, message: "needs a 3×3 stride-1 ungrouped convolution") }
        let (n, c, h, w) = try input.nchw(for: op)
        guard c == inputChannels, g.inputChannels == c, g.outputChannels == cout else {
            throw KernelError.shapeMismatch(operation: op, operand: "input", expected: "[N, \(inputChannels), H, W]", got: input.shape)
        }
        if let b = bias, b.shape != [cout] {
            throw KernelError.shapeMismatch(operation: op, operand: "bias", expected: "[\(cout)]", got: b.shape)
        }
        let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
        return (n, c, h, w, cout, oh, ow)
    }

    /// `U[ξ] = (G·g·Gᵀ)[ξ]` for every (output, input) channel pair of a `[C_out, C_in, 3, 3]` weight
    /// (shape checked by the caller), computed in double precision: α² matrices `[C_out, C_in]`,
    /// `ξ`-major, for the α×3 matrix `G` given row-major. Shared by F(2×2) and F(4×4).
    static func transformedWeights(_ weight: DenseTensor, g: [Double]) -> [Float] {
        let alpha = g.count / 3
        let pairs = weight.shape[0] * weight.shape[1]
        var u = [Float].uninitialized(alpha * alpha * pairs)
        weight.values.withUnsafeBufferPointer { wb in
            u.withUnsafeMutableBufferPointer { ub in
                g.withUnsafeBufferPointer { gb in
                    withUnsafeTemporaryAllocation(of: Double.self, capacity: 3 * alpha) { rb in
                        guard let w = wb.baseAddress, let out = ub.baseAddress, let gm = gb.baseAddress,
                              let r = rb.baseAddress else { return }
                        for p in 0 ..< pairs {
                            let k = w + p * 9
                            // r = G·k (α×3), then U = r·Gᵀ (α×α)
                            for i in 0 ..< alpha {
                                for j in 0 ..< 3 {
                                    r[3 * i + j] = gm[3 * i] * Double(k[j]) + gm[3 * i + 1] * Double(k[3 + j])
                                        + gm[3 * i + 2] * Double(k[6 + j])
                                }
                            }
                            for i in 0 ..< alpha {
                                for j in 0 ..< alpha {
                                    let v = r[3 * i] * gm[3 * j] + r[3 * i + 1] * gm[3 * j + 1] + r[3 * i + 2] * gm[3 * j + 2]
                                    out[(alpha * i + j) * pairs + p] = Float(v)
                                }
                            }
                        }
                    }
                }
            }
        }
        return u
    }

    /// `conv2d(x, weight, bias, padding=padding)` for the weight `transformed` came from.
    /// - Parameters:
    ///   - input: `[N, C_in, H, W]`.
    ///   - geometry: must satisfy `isApplicable`; its padding is used.
    ///   - residual: added before the epilogue, as in `Convolution.forward`.
    /// - Returns: `[N, C_out, H + 2p − 2, W + 2p − 2]`.
    /// - Throws: `KernelError` when shapes or geometry do not fit.
    public static func forward(
        _ input: DenseTensor, weights transformed: WinogradWeights, bias: DenseTensor?,
        geometry g: Conv2dGeometry, epilogue: Convolution.Epilogue = .none, residual: DenseTensor? = nil
    ) throws -> DenseTensor {
        let (n, c, h, w, cout, oh, ow) = try Winograd.checkedShapes(input, inputChannels: transformed.inputChannels,
                                                                    outputChannels: transformed.outputChannels, bias: bias, geometry: g)
        try Convolution.checkResidual(residual, "winograd", shape: [n, cout, oh, ow])
        let ph = g.padding.height, pw = g.padding.width
        let tilesH = (oh + 1) / 2, tilesW = (ow + 1) / 2
        if let packed = transformed.packed {
            return forwardPacked(input, packed: packed, bias: bias?.values, outputChannels: cout, outputSize: (oh, ow),
                                 padding: (ph, pw), tiles: (tilesH, tilesW), relu: epilogue.isReLU, residual: residual)
        }
        if residual != nil {
            var y = try forward(input, weights: transformed, bias: bias, geometry: g)
            Convolution.withResidual(residual) { Convolution.addResidual(&y.values, $0, relu: epilogue.isReLU) }
            return y
        }
        // a band of tile rows at a time keeps V and M in cache
        let bandTiles = max(1, min(tilesH, Convolution.columnBudget / max(16 * max(c, cout) * tilesW, 1)))
        let bandCapacity = bandTiles * tilesW
        var v = [Float].uninitialized(16 * c * bandCapacity)
        var m = [Float].uninitialized(16 * cout * bandCapacity)
        var out = [Float].uninitialized(n * cout * oh * ow)
        let biasValues = bias?.values
        let relu = epilogue.isReLU

        input.values.withUnsafeBufferPointer { xb in
            transformed.values.withUnsafeBufferPointer { ub in
                v.withUnsafeMutableBufferPointer { vb in
                    m.withUnsafeMutableBufferPointer { mb in
                        out.withUnsafeMutableBufferPointer { yb in
                            guard let x = xb.baseAddress, let u = ub.baseAddress, let vp = vb.baseAddress,
                                  let mp = mb.baseAddress, let y = yb.baseAddress else { return }
                            for img in 0 ..< n {
                                var t0 = 0
                                while t0 < tilesH {
                                    let t1 = min(tilesH, t0 + bandTiles)
                                    let tiles = (t1 - t0) * tilesW
                                    inputTransform(x + img * c * h * w, channels: c, height: h, width: w,
                                                   padding: (ph, pw), tileRows: t0 ..< t1, tilesW: tilesW,
                                                   into: vp, stride: tiles)
                                    for xi in 0 ..< 16 {
                                        Gemm.multiply(m: cout, n: tiles, k: c, a: u + xi * cout * c, lda: c,
                                                      b: vp + xi * c * tiles, ldb: tiles,
                                                      c: mp + xi * cout * tiles, ldc: tiles)
                                    }
                                    outputTransform(mp, channels: cout, stride: tiles, tileRows: t0 ..< t1, tilesW: tilesW,
                                                    outputHeight: oh, outputWidth: ow, bias: biasValues, relu: relu,
                                                    into: y + img * cout * oh * ow)
                                    t0 = t1
                                }
                            }
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [n, cout, oh, ow], values: out)
    }

    /// `forward` on the microkernel through `WinogradDriver`: bands of tile rows numbered through
    /// the batch, `V` and `M` row-major (`V[ξ]` is packed into panels by the product itself).
    private static func forwardPacked(
        _ input: DenseTensor, packed: PackedWeights, bias: [Float]?, outputChannels cout: Int, outputSize: (Int, Int),
        padding: (Int, Int), tiles: (Int, Int), relu: Bool, residual: DenseTensor?
    ) -> DenseTensor {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = outputSize, (tilesH, tilesW) = tiles
        var out = [Float].uninitialized(n * cout * oh * ow)
        input.values.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { yb in
                Convolution.withResidual(residual) { res in
                    guard let x = xb.baseAddress, let y = yb.baseAddress else { return }
                    // the band's tile rows `rows` (numbered through the batch), one image at a time
                    func eachImage(_ rows: Range<Int>, _ body: (_ img: Int, _ local: Range<Int>, _ firstTile: Int) -> Void) {
                        var r = rows.lowerBound
                        while r < rows.upperBound {
                            let img = r / tilesH, r1 = min(rows.upperBound, (img + 1) * tilesH)
                            body(img, r - img * tilesH ..< r1 - img * tilesH, (r - rows.lowerBound) * tilesW)
                            r = r1
                        }
                }
                WinogradDriver.run(images: n, inputChannels: c, outputChannels: cout, tilesH: tilesH, tilesW: tilesW,
                                   points: 16, panelWidth: nil, input: { rows, v, tiles, _, threaded in
                    eachImage(rows) { img, local, first in
                        inputTransform(x + img * c * h * w, channels: c, height: h, width: w, padding: padding,
                                       tileRows: local, tilesW: tilesW, into: v + first, stride: tiles, threaded: threaded)
                    }
                }, gemm: { xi, v, vStride, m, tiles in
                    Microkernel.multiply(packed, group: xi, b: v + xi * vStride, ldb: tiles, n: tiles,
                                         c: m + xi * cout * tiles, ldc: tiles)
                }, output: { m, tiles, rows, threaded in
                    eachImage(rows) { img, local, first in
                        outputTransform(m + first, channels: cout, stride: tiles, tileRows: local, tilesW: tilesW,
                                        outputHeight: oh, outputWidth: ow, bias: bias, relu: relu,
                                        into: y + img * cout * oh * ow, residual: res.map { $0 + img * cout * oh * ow },
                                        threaded: threaded)
                    }
                })
                }
            }
        }
        return DenseTensor(uncheckedShape: [n, cout, oh, ow], values: out)
    }

    /// `Y = Aᵀ·M·A` for the tile whose 16 values lie `planeStride` apart from `p`, plus `beta`, the
    /// residual plane `res` (laid out as `dst`) and the ReLU, written at (`row`, `column`) where it
    /// lies inside the output plane `dst`.
    @inline(__always)
    static func storeTile(_ p: UnsafePointer<Float>, planeStride: Int, beta: Float, relu: Bool,
                          into dst: UnsafeMutablePointer<Float>, row oy: Int, column ox: Int, outputHeight oh: Int, outputWidth ow: Int,
                          residual res: UnsafePointer<Float>? = nil) {
        func row(_ i: Int) -> SIMD4<Float> {
            let q = p + 4 * i * planeStride
            return SIMD4(q[0], q[planeStride], q[2 * planeStride], q[3 * planeStride])
        }
        let q0 = row(0), q1 = row(1), q2 = row(2), q3 = row(3)
        let s0 = q0 + q1 + q2, s1 = q1 - q2 - q3
        var y00 = s0[0] + s0[1] + s0[2] + beta, y01 = s0[1] - s0[2] - s0[3] + beta
        var y10 = s1[0] + s1[1] + s1[2] + beta, y11 = s1[1] - s1[2] - s1[3] + beta
        if let r = res.map({ $0 + oy * ow + ox }) {
            y00 += r[0]
            if ox + 1 < ow { y01 += r[1] }
            if oy + 1 < oh {
                y10 += r[ow]
                if ox + 1 < ow { y11 += r[ow + 1] }
            }
        }
        if relu { y00 = max(y00, 0); y01 = max(y01, 0); y10 = max(y10, 0); y11 = max(y11, 0) }
        let r0 = dst + oy * ow + ox
        r0[0] = y00
        if ox + 1 < ow { r0[1] = y01 }
        if oy + 1 < oh {
            r0[ow] = y10
            if ox + 1 < ow { r0[ow + 1] = y11 }
        }
    }

    /// `V[ξ][c][t] = (Bᵀ·d·B)[ξ]` for the 4×4 input patch `d` of each tile `t` in the band.
    private static func inputTransform(
        _ x: UnsafePointer<Float>, channels: Int, height h: Int, width w: Int, padding: (Int, Int),
        tileRows: Range<Int>, tilesW: Int, into v: UnsafeMutablePointer<Float>, stride: Int, threaded: Bool = true
    ) {
        let box = UncheckedSendable((x, v))
        parallelFor(channels, minimumWork: threaded ? 2 : Int.max) { ch in
            let src = box.value.0 + ch * h * w
            let dst = box.value.1 + ch * stride
            let planeStride = channels * stride
            for ty in tileRows {
                let iy0 = ty * 2 - padding.0
                for tx in 0 ..< tilesW {
                    let ix0 = tx * 2 - padding.1
                    func row(_ r: Int) -> SIMD4<Float> {
                        let iy = iy0 + r
                        if iy < 0 || iy >= h { return SIMD4() }
                        let p = src + iy * w
                        if ix0 >= 0 && ix0 + 3 < w { return SIMD4(p[ix0], p[ix0 + 1], p[ix0 + 2], p[ix0 + 3]) }
                        var s = SIMD4<Float>()
                        for k in 0 ..< 4 where ix0 + k >= 0 && ix0 + k < w { s[k] = p[ix0 + k] }
                        return s
                    }
                    let d0 = row(0), d1 = row(1), d2 = row(2), d3 = row(3)
                    // Bᵀ·d on rows, then ·B on columns
                    let r0 = d0 - d2, r1 = d1 + d2, r2 = d2 - d1, r3 = d1 - d3
                    let t = (ty - tileRows.lowerBound) * tilesW + tx
                    @inline(__always) func store(_ r: SIMD4<Float>, _ i: Int) {
                        let base = dst + t + 4 * i * planeStride
                        base[0] = r[0] - r[2]
                        base[planeStride] = r[1] + r[2]
                        base[2 * planeStride] = r[2] - r[1]
                        base[3 * planeStride] = r[1] - r[3]
                    }
                    store(r0, 0); store(r1, 1); store(r2, 2); store(r3, 3)
                }
            }
        }
    }

    /// `Y = Aᵀ·M·A` per tile, plus bias and the epilogue, written where the 2×2 tile lies inside the output.
    private static func outputTransform(
        _ m: UnsafePointer<Float>, channels: Int, stride: Int, tileRows: Range<Int>, tilesW: Int,
        outputHeight oh: Int, outputWidth ow: Int, bias: [Float]?, relu: Bool, into y: UnsafeMutablePointer<Float>,
        residual: UnsafePointer<Float>? = nil, threaded: Bool = true
    ) {
        let box = UncheckedSendable((m, y, residual))
        parallelFor(channels, minimumWork: threaded ? 2 : Int.max) { o in
            let src = box.value.0 + o * stride
            let dst = box.value.1 + o * oh * ow
            let res = box.value.2.map { $0 + o * oh * ow }
            let planeStride = channels * stride
            let beta = bias?[o] ?? 0
            for ty in tileRows {
                for tx in 0 ..< tilesW {
                    let t = (ty - tileRows.lowerBound) * tilesW + tx
                    storeTile(src + t, planeStride: planeStride, beta: beta, relu: relu, into: dst, row: ty * 2, column: tx * 2,
                              outputHeight: oh, outputWidth: ow, residual: res)
                }
            }
        }
    }
}
