// N images, C channels, H rows, W columns (NCHW); weights are [C_out, C_in, 3, 3].

/// 3×3 weights transformed for `Winograd4x4`: `U[ξ] = G·g·Gᵀ` laid out as 36 matrices `[C_out, C_in]`.
public struct Winograd4x4Weights: Sendable {
    /// The 36 transformed matrices, `ξ`-major; empty when `packed` holds them (they are 4× the
    /// size of the 3×3 weight, so only one copy is kept).
    let values: [Float]
    /// Output channels.
    public let outputChannels: Int
    /// Input channels.
    public let inputChannels: Int
    /// The 36 matrices packed for `Microkernel`, when it is in use.
    let packed: PackedWeights?
}

/// 3×3, stride-1, undilated, ungrouped convolution by Winograd's F(4×4, 3×3): 36 GEMMs of
/// `[C_out, C_in] · [C_in, tiles]` replace one GEMM of `[C_out, 9·C_in] · [9·C_in, H·W]`,
/// 4× fewer multiplications. The transforms scale by up to 8 and 1/24, so rounding is a few
/// times that of F(2×2, 3×3): about 1e-6 of the output's magnitude per layer in float32.
///
/// Tiles of all images in a batch are numbered together, so small planes at batch > 1 still make
/// wide GEMMs. Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016).
/// Forward caches nothing; its backward is the im2col convolution's.
public enum Winograd4x4 {
    /// True when this kernel is measured to beat im2col (and F(2×2, 3×3)) for `geometry` on
    /// `images` planes of `height × width` (AVX-512 OpenBLAS, 2 cores) and keeps zoo outputs within
    /// 1e-4 of torch's: ≥128 channels in and out (64-channel layers see larger inputs relative to
    /// their outputs and lose too many digits to the transforms' 4/5/8 coefficients), at least
    /// 100 output pixels over the batch so the 36 GEMMs are not all overhead.
    /// Not where `hasFewTiles` (F(2×2) takes those on the microkernel).
    public static func isFaster(_ g: Conv2dGeometry, images: Int = 1, height: Int, width: Int) -> Bool {
        Winograd.isApplicable(g) && g.inputChannels >= 128 && g.outputChannels >= 128 && images * height * width >= 100
            && !(Microkernel.isEnabled && hasFewTiles(g, images: images, height: height, width: width))
    }

    /// True for a layer of ≥256 channels whose 36 products would have at most 9 tiles over the
    /// batch (a 10×10 plane, or 7×7 planes of one or two images), so they run on the microkernel's
    /// narrow kernels while 36 transformed matrices of at least 9 MB stream through: F(2×2)'s 16
    /// products of three to four times the tiles are faster there (measured against F(4×4), both
    /// on the microkernel: ResNet's 512-channel 7×7 layers at batch 1 2.0 against 3.4 ms, batch 2
    /// 4.4 against 4.6, SegNet's 10×10 layers 3.6 against 4.3). The 7×7 planes at batch 1 (49
    /// pixels) are F(2×2)'s too: the implicit GEMM took 3.4–3.7 ms. From 12 tiles F(4×4) is faster
    /// (ResNet's 14×14 layers at batch 1, 16 tiles: 256 channels 0.9–1.5 against 1.6–1.8 ms, 512
    /// channels 2.8–4.8 against 3.7–6.6; 7×7 at batch 3: 4.2 against 6.5).
    static func hasFewTiles(_ g: Conv2dGeometry, images: Int, height: Int, width: Int) -> Bool {
        guard Winograd.isApplicable(g), g.inputChannels >= 256, g.outputChannels >= 256,
              let (oh, ow) = try? g.convolutionOutputSize(height: height, width: width) else { return false }
        return images * ((oh + 3) / 4) * ((ow + 3) / 4) <= 9
    }

    /// `isFaster` for a weight transformed for this one call (a training step, where the weight
    /// changes every step): the transform (~0.3 µs per channel pair, 73 ms for 512×512) must be
    /// paid back by the product, which takes at least 4096 output pixels of the batch (layer4 of
    /// ResNet at batch 16, 784 pixels, is faster on the panel kernel).
    public static func paysForTransform(_ g: Conv2dGeometry, images: Int, height: Int, width: Int) -> Bool {
        isFaster(g, images: images, height: height, width: width) && images * height * width >= 4096
    }

    /// `U = G·g·Gᵀ` for every (output, input) channel pair of a `[C_out, C_in, 3, 3]` weight,
    /// computed in double precision.
    /// - Throws: `KernelError.shapeMismatch` for any other weight shape.
    public static func transform(weight: DenseTensor) throws -> Winograd4x4Weights {
        guard weight.rank == 4, weight.shape[2] == 3, weight.shape[3] == 3 else {
            throw KernelError.shapeMismatch(operation: "winograd", operand: "weight", expected: "[C_out, C_in, 3, 3]", got: weight.shape)
        }
        let u = Winograd.transformedWeights(weight, g: [1.0 / 4, 0, 0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
                                                        1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6, 0, 0, 1])
        let cout = weight.shape[0], cin = weight.shape[1]
        let packed = Microkernel.pack(u, groups: 36, rows: cout, columns: cin)
        return Winograd4x4Weights(values: packed == nil ? u : [], outputChannels: cout, inputChannels: cin, packed: packed)
    }

    /// `conv2d(x, weight, bias, padding=padding)` for the weight `transformed` came from.
    /// - Parameters:
    ///   - input: `[N, C_in, H, W]`.
    ///   - geometry: must satisfy `Winograd.isApplicable`; its padding is used.
    ///   - residual: added before the epilogue, as in `Convolution.forward`.
    /// - Returns: `[N, C_out, H + 2p − 2, W + 2p − 2]`.
    /// - Throws: `KernelError` when shapes or geometry do not fit.
    public static func forward(
        _ input: DenseTensor, weights transformed: Winograd4x4Weights, bias: DenseTensor?,
        geometry g: Conv2dGeometry, epilogue: Convolution.Epilogue = .none, residual: DenseTensor? = nil
    ) throws -> DenseTensor {
        let (n, c, h, w, cout, oh, ow) = try Winograd.checkedShapes(input, inputChannels: transformed.inputChannels,
                                                                    outputChannels: transformed.outputChannels, bias: bias, geometry: g)
        try Convolution.checkResidual(residual, "winograd", shape: [n, cout, oh, ow])
        if residual != nil && !Microkernel.isEnabled {
            var y = try forward(input, weights: transformed, bias: bias, geometry: g)
            Convolution.withResidual(residual) { Convolution.addResidual(&y.values, $0, relu: epilogue.isReLU) }
            return y
        }
        let tilesH = (oh + 3) / 4, tilesW = (ow + 3) / 4
        let geometry = TileGeometry(channels: c, height: h, width: w, padding: (g.padding.height, g.padding.width),
                                    tilesH: tilesH, tilesW: tilesW, outputHeight: oh, outputWidth: ow)
        var out = [Float].uninitialized(n * cout * oh * ow)
        let biasValues = bias?.values
        let relu = epilogue.isReLU
        let panelWidth: Int? = transformed.packed == nil ? nil : Microkernel.panelWidth
        input.values.withUnsafeBufferPointer { xb in
            transformed.values.withUnsafeBufferPointer { ub in
                out.withUnsafeMutableBufferPointer { yb in
                    Convolution.withResidual(residual) { res in
                        guard let x = xb.baseAddress, let y = yb.baseAddress else { return }
                        // nil when the packed copy is the only one
                        let u = ub.baseAddress
                        WinogradDriver.run(images: n, inputChannels: c, outputChannels: cout, tilesH: tilesH, tilesW: tilesW,
                                           points: 36, panelWidth: panelWidth, input: { rows, v, tiles, vStride, threaded in
                            inputTransform(x, geometry, rows: rows, into: v, stride: tiles, xiStride: vStride,
                                           panelWidth: panelWidth, threaded: threaded)
                        }, gemm: { xi, v, vStride, m, tiles in
                            if let packed = transformed.packed {
                                Microkernel.multiply(packed, group: xi, panels: v + xi * vStride, n: tiles,
                                                     c: m + xi * cout * tiles, ldc: tiles)
                            } else if let u {
                                Gemm.multiply(m: cout, n: tiles, k: c, a: u + xi * cout * c, lda: c, b: v + xi * vStride, ldb: tiles,
                                              c: m + xi * cout * tiles, ldc: tiles)
                            }
                        }, output: { m, tiles, rows, threaded in
                            outputTransform(m, geometry, outputChannels: cout, stride: tiles, rows: rows,
                                            bias: biasValues, relu: relu, into: y, residual: res, threaded: threaded)
                        })
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [n, cout, oh, ow], values: out)
    }

    /// Sizes shared by the two transforms.
    struct TileGeometry {
        let channels: Int, height: Int, width: Int, padding: (Int, Int)
        let tilesH: Int, tilesW: Int, outputHeight: Int, outputWidth: Int
    }

    /// `Bᵀ·d` along one axis for six values.
    @inline(__always)
    private static func bt(_ d0: SIMD8<Float>, _ d1: SIMD8<Float>, _ d2: SIMD8<Float>, _ d3: SIMD8<Float>,
                           _ d4: SIMD8<Float>, _ d5: SIMD8<Float>)
        -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        let a = d4 - 4 * d2, b = d3 - 4 * d1
        let c = d4 - d2, e = 2 * (d3 - d1)
        return (4 * d0 - 5 * d2 + d4, a + b, a - b, c + e, c - e, 4 * d1 - 5 * d3 + d5)
    }

    /// `V[ξ][c][t] = (Bᵀ·d·B)[ξ]` for the 6×6 input patch `d` of each tile `t` in the band.
    /// `V[ξ]` lies `xiStride` floats after `V[ξ−1]`; within it, channel `c`'s tile `t` is at
    /// `c·stride + t`, or with `panelWidth` at `(t / panelWidth)·C·panelWidth + c·panelWidth + t % panelWidth`.
    private static func inputTransform(
        _ x: UnsafePointer<Float>, _ geo: TileGeometry, rows: Range<Int>, into v: UnsafeMutablePointer<Float>, stride: Int,
        xiStride: Int, panelWidth: Int?, threaded: Bool
    ) {
        let box = UncheckedSendable((x, v))
        let channels = geo.channels, h = geo.height, w = geo.width
        if panelWidth != nil {
            parallelFor(channels, minimumWork: threaded ? 2 : Int.max) { ch in
                Microkernel.winograd4x4Input(box.value.0, channels: channels, height: h, width: w, padding: geo.padding,
                                             tilesH: geo.tilesH, tilesW: geo.tilesW, rows: rows, channel: ch,
                                             into: box.value.1, xiStride: xiStride)
            }
            return
        }
        parallelFor(channels, minimumWork: threaded ? 2 : Int.max) { ch in
            let planeStride = xiStride
            @inline(__always) func address(_ t: Int) -> UnsafeMutablePointer<Float> {
                if let pw = panelWidth { return box.value.1 + (t / pw * channels + ch) * pw + t % pw }
                return box.value.1 + ch * stride + t
            }
            for gr in rows {
                let img = gr / geo.tilesH, ty = gr % geo.tilesH
                let src = box.value.0 + (img * channels + ch) * h * w
                let iy0 = ty * 4 - geo.padding.0
                let tileBase = (gr - rows.lowerBound) * geo.tilesW
                for tx in 0 ..< geo.tilesW {
                    let ix0 = tx * 4 - geo.padding.1
                    @inline(__always) func row(_ r: Int) -> SIMD8<Float> {
                        let iy = iy0 + r
                        if iy < 0 || iy >= h { return SIMD8() }
                        let p = src + iy * w
                        if ix0 >= 0 && ix0 + 8 <= w {
                            return UnsafeRawPointer(p + ix0).loadUnaligned(as: SIMD8<Float>.self)
                        }
                        var s = SIMD8<Float>()
                        for k in 0 ..< 6 where ix0 + k >= 0 && ix0 + k < w { s[k] = p[ix0 + k] }
                        return s
                    }
                    // Bᵀ·d on rows (each SIMD8 is one patch row), then ·B on columns (lanes)
                    let (t0, t1, t2, t3, t4, t5) = bt(row(0), row(1), row(2), row(3), row(4), row(5))
                    let base = address(tileBase + tx)
                    @inline(__always) func store(_ r: SIMD8<Float>, _ i: Int) {
                        let d0 = r[0], d1 = r[1], d2 = r[2], d3 = r[3], d4 = r[4], d5 = r[5]
                        let a = d4 - 4 * d2, b = d3 - 4 * d1
                        let c = d4 - d2, e = 2 * (d3 - d1)
                        let o = base + 6 * i * planeStride
                        o[0] = 4 * d0 - 5 * d2 + d4
                        o[planeStride] = a + b
                        o[2 * planeStride] = a - b
                        o[3 * planeStride] = c + e
                        o[4 * planeStride] = c - e
                        o[5 * planeStride] = 4 * d1 - 5 * d3 + d5
                    }
                    store(t0, 0); store(t1, 1); store(t2, 2); store(t3, 3); store(t4, 4); store(t5, 5)
                }
            }
        }
    }

    /// `Y = Aᵀ·M·A` per tile, plus bias and the epilogue, written where the 4×4 tile lies inside the output;
    /// the residual (laid out as `y`; microkernel path only, the caller adds it otherwise) before the epilogue.
    private static func outputTransform(
        _ m: UnsafePointer<Float>, _ geo: TileGeometry, outputChannels cout: Int, stride: Int, rows: Range<Int>,
        bias: [Float]?, relu: Bool, into y: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?, threaded: Bool
    ) {
        let box = UncheckedSendable((m, y, residual))
        let oh = geo.outputHeight, ow = geo.outputWidth
        if Microkernel.isEnabled {
            parallelFor(cout, minimumWork: threaded ? 2 : Int.max) { o in
                Microkernel.winograd4x4Output(box.value.0, outputChannels: cout, tiles: stride, channel: o, rows: rows,
                                              tilesH: geo.tilesH, tilesW: geo.tilesW, outputHeight: oh, outputWidth: ow,
                                              bias: bias?[o] ?? 0, relu: relu, into: box.value.1, residual: box.value.2)
            }
            return
        }
        parallelFor(cout, minimumWork: threaded ? 2 : Int.max) { o in
            let src = box.value.0 + o * stride
            let planeStride = cout * stride
            let beta = bias?[o] ?? 0
            for gr in rows {
                let img = gr / geo.tilesH, ty = gr % geo.tilesH
                let dst = box.value.1 + (img * cout + o) * oh * ow
                let tileBase = (gr - rows.lowerBound) * geo.tilesW
                for tx in 0 ..< geo.tilesW {
                    let p = src + tileBase + tx
                    @inline(__always) func row(_ i: Int) -> SIMD8<Float> {
                        let q = p + 6 * i * planeStride
                        return SIMD8(q[0], q[planeStride], q[2 * planeStride], q[3 * planeStride],
                                     q[4 * planeStride], q[5 * planeStride], 0, 0)
                    }
                    let m0 = row(0), m1 = row(1), m2 = row(2), m3 = row(3), m4 = row(4), m5 = row(5)
                    // Aᵀ·M on rows
                    let a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4
                    let s0 = m0 + a + c, s1 = b + 2 * d, s2 = a + 4 * c, s3 = b + 8 * d + m5
                    let oy = ty * 4, ox = tx * 4
                    let cols = min(4, ow - ox)
                    @inline(__always) func emit(_ s: SIMD8<Float>, _ i: Int) {
                        if oy + i >= oh { return }
                        let a = s[1] + s[2], b = s[1] - s[2], c = s[3] + s[4], d = s[3] - s[4]
                        var r = SIMD4<Float>(s[0] + a + c, b + 2 * d, a + 4 * c, b + 8 * d + s[5]) + beta
                        if relu { r = r.replacing(with: 0, where: r .< 0) }
                        let q = dst + (oy + i) * ow + ox
                        if cols == 4 {
                            UnsafeMutableRawPointer(q).storeBytes(of: r, as: SIMD4<Float>.self)
                        } else {
                            for k in 0 ..< cols { q[k] = r[k] }
                        }
                    }
                    emit(s0, 0); emit(s1, 1); emit(s2, 2); emit(s3, 3)
                }
            }
        }
    }
}
