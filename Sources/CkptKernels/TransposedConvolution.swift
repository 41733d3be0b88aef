// N images, C channels, H rows, W columns (NCHW); weights are [C_in, C_out/groups, kH, kW].

/// 2-d transposed convolution ("deconvolution") as GEMM + col2im: the adjoint of `Convolution`.
/// When the kernel equals the stride (SegNet's and U-Net's 2×2 stride-2 upsampling), taps never
/// overlap and the GEMM's result is scattered straight into the output (`forwardScatter`).
///
/// Forward caches nothing; a backward beside it needs the input and the weight.
/// PyTorch counterpart: `torch.nn.functional.conv_transpose2d`.
public enum TransposedConvolution {
    /// `y = conv_transpose2d(x, weight, bias)` for `x` of shape `[N, C_in, H, W]`.
    ///
    /// - Parameters:
    ///   - input: `[N, C_in, H, W]`.
    ///   - weight: `[C_in, C_out/groups, kH, kW]`.
    ///   - bias: `[C_out]`, or nil.
    ///   - geometry: stride, padding, output padding, dilation and groups.
    /// - Returns: `[N, C_out, H_out, W_out]` with `H_out = (H−1)·stride − 2·padding + dilation·(kH−1) + output_padding + 1`.
    /// - Throws: `KernelError` when a shape does not fit the geometry.
    public static func forward(
        _ input: DenseTensor, weight: DenseTensor, bias: DenseTensor?, geometry g: Conv2dGeometry
    ) throws -> DenseTensor {
        let (n, c, h, w) = try g.checkOperands("conv_transpose2d", input: input, weight: weight, bias: bias, transposed: true)
        let (oh, ow) = try g.transposedOutputSize(height: h, width: w)
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let kdim = coutG * g.kernelSize.height * g.kernelSize.width
        let inPlane = h * w, outPlane = oh * ow
        if isScatter(g) && Microkernel.isEnabled {
            return forwardScatter(input, weight: weight, bias: bias?.values, geometry: g, outputSize: (oh, ow))
        }
        var out = [Float](repeating: 0, count: n * g.outputChannels * outPlane)
        // images dealt to the cores, each with its own column buffer and single-threaded products
        let lanes = max(1, min(Gemm.threadCount, n))
        var columns = [Float].uninitialized(lanes * kdim * inPlane)  // GEMM writes it whole

        input.values.withUnsafeBufferPointer { xb in
            weight.values.withUnsafeBufferPointer { wb in
                out.withUnsafeMutableBufferPointer { yb in
                    columns.withUnsafeMutableBufferPointer { cb in
                        guard let x = xb.baseAddress, let wt = wb.baseAddress, let y = yb.baseAddress,
                              let colAll = cb.baseAddress else { return }
                        let box = UncheckedSendable((x, wt, y, colAll))
                        let job = { (lane: Int) in
                            let (x, wt, y, colAll) = box.value
                            let col = colAll + lane * kdim * inPlane
                            var img = lane
                            while img < n {
                                for grp in 0 ..< groups {
                                    let xg = x + (img * c + grp * cinG) * inPlane
                                    let yg = y + (img * g.outputChannels + grp * coutG) * outPlane
                                    let wg = wt + grp * cinG * kdim
                                    // columns[kdim × HW] = Wgᵀ[kdim × cinG] · Xg[cinG × HW]
                                    Gemm.multiply(transposeA: true, m: kdim, n: inPlane, k: cinG,
                                                  a: wg, lda: kdim, b: xg, ldb: inPlane, c: col, ldc: inPlane)
                                    // the input grid plays the role of the convolution's output grid
                                    Im2col.fold(columns: col, channels: coutG, height: oh, width: ow, geometry: g,
                                                columnHeight: h, columnWidth: w, threaded: lanes == 1, into: yg)
                                }
                                img += lanes
                            }
                        }
                        if lanes == 1 {
                            job(0)
                        } else {
                            Gemm.withThreadCount(1) { parallelFor(lanes) { job($0) } }
                        }
                    }
                }
            }
        }
        Convolution.applyBiasAndEpilogue(&out, bias: bias?.values, channels: g.outputChannels, plane: outPlane, epilogue: .none)
        return DenseTensor(uncheckedShape: [n, g.outputChannels, oh, ow], values: out)
    }

    /// True when every output pixel receives exactly one tap of one input pixel: kernel = stride,
    /// no padding, dilation or output padding.
    static func isScatter(_ g: Conv2dGeometry) -> Bool {
        g.kernelSize == g.stride && g.padding == (0, 0) && g.dilation == (1, 1) && g.outputPadding == (0, 0)
    }

    /// The transposed convolution of an `isScatter` geometry on the microkernel, with no col2im and no
    /// zero fill: per group, `P[C_out/g·kH·kW, pixels] = Wᵀ · X` over the batch's input pixels
    /// (`PanelSchedule`; the weight is read in place as the transposed `A`), and row
    /// `(o, ki, kj)` of `P` lands, plus the bias, at output pixel `(iy·kH + ki, ix·kW + kj)`.
    static func forwardScatter(_ input: DenseTensor, weight: DenseTensor, bias: [Float]?, geometry g: Conv2dGeometry,
                               outputSize: (Int, Int)) -> DenseTensor {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = outputSize
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let (kh, kw) = (g.kernelSize.height, g.kernelSize.width)
        let taps = kh * kw, rows = coutG * taps
        let inPlane = h * w, outPlane = oh * ow
        // every output element is one product element plus the bias: nothing to clear
        var out = [Float].uninitialized(n * g.outputChannels * outPlane)
        let schedule = PanelSchedule(pixels: n * inPlane, depth: cinG, rows: rows, groups: groups)
        let chunk = schedule.chunk
        let pointwise = Conv2dGeometry(inputChannels: cinG, outputChannels: cinG, kernelSize: 1)
        input.values.withUnsafeBufferPointer { xb in
            weight.values.withUnsafeBufferPointer { wb in
                out.withUnsafeMutableBufferPointer { yb in
                    guard let x = xb.baseAddress, let wt = wb.baseAddress, let y = yb.baseAddress else { return }
                    let box = UncheckedSendable((x, wt, y))
                    schedule.run { job, panels, product in
                        let (x, wt, y) = box.value
                        let grp = job.group, i0 = job.pixels.lowerBound, i1 = job.pixels.upperBound
                        Microkernel.unfold(x + grp * cinG * inPlane, imageStride: c * inPlane, channels: cinG,
                                           height: h, width: w, geometry: pointwise, outputHeight: h, outputWidth: w,
                                           pixels: job.pixels, into: panels)
                        Microkernel.multiply(transposedA: wt + grp * cinG * rows, lda: rows, rows: rows, depth: cinG,
                                             panels: panels, n: i1 - i0, c: product, ldc: chunk, rowPanels: job.rowPanels)
                        let r0 = min(rows, job.rowPanels.lowerBound * 8), r1 = min(rows, job.rowPanels.upperBound * 8)
                        // run by run along one input row: pixel ix of row iy of image img
                        var i = i0
                        while i < i1 {
                            let img = i / inPlane, q = i % inPlane
                            let iy = q / w, ix = q % w
                            let count = min(w - ix, i1 - i)
                            let base = y + (img * g.outputChannels + grp * coutG) * outPlane + iy * kh * ow + ix * kw
                            var r = r0
                            while r < r1 {
                                let o = r / taps, t = r % taps, ki = t / kw, kj = t % kw
                                let beta = bias?[grp * coutG + o] ?? 0
                                let src = product + r * chunk + (i - i0)
                                let dst = base + o * outPlane + ki * ow + kj
                                if kw == 2 && kj == 0 && r + 1 < r1 {
                                    // the two taps of a row side by side: one contiguous run of the output
                                    let src1 = src + chunk
                                    for k in 0 ..< count {
                                        dst[2 * k] = src[k] + beta
                                        dst[2 * k + 1] = src1[k] + beta
                                    }
                                    r += 2
                                    continue
                                }
                                for k in 0 ..< count { dst[k * kw] = src[k] + beta }
                                r += 1
                            }
                            i += count
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [n, g.outputChannels, oh, ow], values: out)
    }
}
