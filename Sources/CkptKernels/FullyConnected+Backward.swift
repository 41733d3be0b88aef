extension FullyConnected {
    /// The gradients of `y = x·Wᵀ + b` given `dOutput` `[N, out]`: `dWeight = dYᵀ·x`,
    /// `dInput = dY·W`, `dBias = Σ_n dY`. Needs the forward's input and the weight.
    /// PyTorch counterpart: the backward of `torch.nn.functional.linear`.
    /// - Throws: `KernelError.shapeMismatch` when the shapes do not fit.
    public static func backward(_ dOutput: DenseTensor, input: DenseTensor, weight: DenseTensor,
                                needs: GradientNeeds) throws -> LayerGradients {
        let op = "linear backward"
        guard weight.rank == 2, input.rank == 2, input.shape[1] == weight.shape[1] else {
            throw KernelError.shapeMismatch(operation: op, operand: "input", expected: "[N, \(weight.shape.last ?? 0)]", got: input.shape)
        }
        let n = input.shape[0], outF = weight.shape[0], inF = weight.shape[1]
        guard dOutput.shape == [n, outF] else {
            throw KernelError.shapeMismatch(operation: op, operand: "output gradient", expected: "\([n, outF])", got: dOutput.shape)
        }
        var result = LayerGradients()
        if needs.weight {
            var dw = [Float].uninitialized(outF * inF)
            dOutput.values.withUnsafeBufferPointer { gb in
                input.values.withUnsafeBufferPointer { xb in
                    dw.withUnsafeMutableBufferPointer { wb in
                        guard let gy = gb.baseAddress, let x = xb.baseAddress, let dwp = wb.baseAddress else { return }
                        Gemm.multiply(transposeA: true, m: outF, n: inF, k: n, a: gy, lda: outF, b: x, ldb: inF, c: dwp, ldc: inF)
                    }
                }
            }
            result.dWeight = DenseTensor(uncheckedShape: [outF, inF], values: dw)
        }
        if needs.input {
            var dx = [Float].uninitialized(n * inF)
            dOutput.values.withUnsafeBufferPointer { gb in
                weight.values.withUnsafeBufferPointer { wb in
                    dx.withUnsafeMutableBufferPointer { xb in
                        guard let gy = gb.baseAddress, let w = wb.baseAddress, let dxp = xb.baseAddress else { return }
                        Gemm.multiply(m: n, n: inF, k: outF, a: gy, lda: outF, b: w, ldb: inF, c: dxp, ldc: inF)
                    }
                }
            }
            result.dInput = DenseTensor(uncheckedShape: [n, inF], values: dx)
        }
        if needs.bias {
            var sums = [Double](repeating: 0, count: outF)
            for i in 0 ..< n {
                for j in 0 ..< outF { sums[j] += Double(dOutput.values[i * outF + j]) }
            }
            result.dBias = DenseTensor(uncheckedShape: [outF], values: sums.map { Float($0) })
        }
        return result
    }
}
