// N images, C channels, H rows, W columns (NCHW); weights are [C_in, C_out/groups, kH, kW].

extension TransposedConvolution {
    /// The gradients of `y = conv_transpose2d(x, weight, bias)` given `dOutput`.
    ///
    /// Mirrors `forward` (GEMM then fold): per image and group `dcol = unfold(dY)`, then
    /// `dInput = W · dcol` and `dWeight += x · dcolᵀ`; `dBias` sums `dY` per channel.
    /// Needs the forward's input and the weight. PyTorch counterpart: `convolution_backward(transposed=True)`.
    /// - Throws: `KernelError` when a shape does not fit the geometry.
    public static func backward(_ dOutput: DenseTensor, input: DenseTensor, weight: DenseTensor, geometry g: Conv2dGeometry,
                                needs: GradientNeeds) throws -> LayerGradients {
        let op = "conv_transpose2d backward"
        let (n, c, h, w) = try g.checkOperands(op, input: input, weight: weight, bias: nil, transposed: true)
        let (oh, ow) = try g.transposedOutputSize(height: h, width: w)
        guard dOutput.shape == [n, g.outputChannels, oh, ow] else {
            throw KernelError.shapeMismatch(operation: op, operand: "output gradient",
                                            expected: "\([n, g.outputChannels, oh, ow])", got: dOutput.shape)
        }
        var result = LayerGradients()
        if needs.bias { result.dBias = Convolution.channelSums(dOutput) }
        guard needs.input || needs.weight else { return result }
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let kdim = coutG * g.kernelSize.height * g.kernelSize.width
        let inPlane = h * w, outPlane = oh * ow
        var dx = [Float].uninitialized(needs.input ? input.count : 0)
        var dw = [Float](repeating: 0, count: needs.weight ? weight.count : 0)
        var columns = [Float].uninitialized(kdim * inPlane)
        input.values.withUnsafeBufferPointer { xb in
            weight.values.withUnsafeBufferPointer { wb in
                dOutput.values.withUnsafeBufferPointer { gb in
                    dx.withUnsafeMutableBufferPointer { dxb in
                        dw.withUnsafeMutableBufferPointer { dwb in
                            columns.withUnsafeMutableBufferPointer { cb in
                                guard let x = xb.baseAddress, let wt = wb.baseAddress, let gy = gb.baseAddress,
                                      let col = cb.baseAddress else { return }
                                for img in 0 ..< n {
                                    for grp in 0 ..< groups {
                                        let gyg = gy + (img * g.outputChannels + grp * coutG) * outPlane
                                        // the input grid plays the role of the convolution's output grid
                                        Im2col.unfold(input: gyg, channels: coutG, height: oh, width: ow, geometry: g,
                                                      outputHeight: h, outputWidth: w, into: col)
                                        let wg = wt + grp * cinG * kdim
                                        // an empty array's baseAddress is not nil: test the need itself
                                        if needs.input, let dxp = dxb.baseAddress {
                                            // dX_g[cinG × HW] = W_g[cinG × kdim] · dcol[kdim × HW]
                                            Gemm.multiply(m: cinG, n: inPlane, k: kdim, a: wg, lda: kdim, b: col, ldb: inPlane,
                                                          c: dxp + (img * c + grp * cinG) * inPlane, ldc: inPlane)
                                        }
                                        if needs.weight, let dwp = dwb.baseAddress {
                                            // dW_g[cinG × kdim] += X_g[cinG × HW] · dcolᵀ[HW × kdim]
                                            Gemm.multiply(transposeB: true, m: cinG, n: kdim, k: inPlane,
                                                          a: x + (img * c + grp * cinG) * inPlane, lda: inPlane,
                                                          b: col, ldb: inPlane, beta: 1, c: dwp + grp * cinG * kdim, ldc: kdim)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if needs.input { result.dInput = DenseTensor(uncheckedShape: input.shape, values: dx) }
        if needs.weight { result.dWeight = DenseTensor(uncheckedShape: weight.shape, values: dw) }
        return result
    }
}
