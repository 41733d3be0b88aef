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
        // dX = W · unfold(dY) is the convolution of dY with the same weight read as a Conv2d's
        // ([C_in, C_out/g, kH, kW] is the layout of a convolution from C_out to C_in channels)
        let conv = Conv2dGeometry(inputChannels: g.outputChannels, outputChannels: g.inputChannels, kernelSize: g.kernelSize,
                                  stride: g.stride, padding: g.padding, dilation: g.dilation, groups: groups)
        if needs.input {
            var dInput = try Convolution.forward(dOutput, weight: DenseTensor(uncheckedShape: conv.convolutionWeightShape,
                                                                             values: weight.values), bias: nil, geometry: conv)
            if dInput.shape != input.shape { dInput = Convolution.cropOrPad(dInput, height: h, width: w) }
            result.dInput = dInput
        }
        guard needs.weight else { return result }
        if Microkernel.isEnabled {
            // and dW is that convolution's weight gradient, with x in the role of its output's gradient
            result.dWeight = Convolution.weightGradientPacked(input, input: dOutput, geometry: conv,
                                                              sizes: (n, g.outputChannels, oh, ow), outputSize: (h, w))
            return result
        }
        // dW_g[cinG × kdim] += X_g[cinG × HW] · unfold(dY_g)ᵀ[HW × kdim], images dealt to the cores
        let lanes = max(1, min(Gemm.threadCount, n))
        let weightCount = weight.count
        var dWs = [Float](repeating: 0, count: lanes * weightCount)
        var columns = [Float].uninitialized(lanes * kdim * inPlane)
        input.values.withUnsafeBufferPointer { xb in
            dOutput.values.withUnsafeBufferPointer { gb in
                dWs.withUnsafeMutableBufferPointer { dwb in
                    columns.withUnsafeMutableBufferPointer { cb in
                        guard let x = xb.baseAddress, let gy = gb.baseAddress, let dwAll = dwb.baseAddress,
                              let colAll = cb.baseAddress else { return }
                        let box = UncheckedSendable((x, gy, dwAll, colAll))
                        let job = { (lane: Int) in
                            let (x, gy, dwAll, colAll) = box.value
                            let col = colAll + lane * kdim * inPlane
                            let dw = dwAll + lane * weightCount
                            var img = lane
                            while img < n {
                                for grp in 0 ..< groups {
                                    let gyg = gy + (img * g.outputChannels + grp * coutG) * outPlane
                                    // the input grid plays the role of the convolution's output grid
                                    Im2col.unfold(input: gyg, channels: coutG, height: oh, width: ow, geometry: g,
                                                  outputHeight: h, outputWidth: w, threaded: lanes == 1, into: col)
                                    Gemm.multiply(transposeB: true, m: cinG, n: kdim, k: inPlane,
                                                  a: x + (img * c + grp * cinG) * inPlane, lda: inPlane,
                                                  b: col, ldb: inPlane, beta: 1, c: dw + grp * cinG * kdim, ldc: kdim)
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
        var dw = [Float](repeating: 0, count: weightCount)
        for l in 0 ..< lanes {
            for i in 0 ..< weightCount { dw[i] += dWs[l * weightCount + i] }
        }
        result.dWeight = DenseTensor(uncheckedShape: weight.shape, values: dw)
        return result
    }
}
