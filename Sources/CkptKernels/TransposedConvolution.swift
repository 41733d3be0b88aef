// N images, C channels, H rows, W columns (NCHW); weights are [C_in, C_out/groups, kH, kW].

/// 2-d transposed convolution ("deconvolution") as GEMM + col2im: the adjoint of `Convolution`.
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
}
