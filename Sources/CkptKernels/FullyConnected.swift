/// Fully connected layer `y = x·Wᵀ + b` on GEMM.
///
/// Forward caches nothing; a backward needs the input (for `dWeight`) and the weight (for `dInput`).
/// PyTorch counterpart: `torch.nn.functional.linear`.
public enum FullyConnected {
    /// `y = x·Wᵀ + b` for `x` of shape `[N, in]`, `weight` `[out, in]`, `bias` `[out]` or nil.
    /// - Returns: `[N, out]`.
    /// - Throws: `KernelError.shapeMismatch` when the shapes do not fit.
    public static func forward(_ input: DenseTensor, weight: DenseTensor, bias: DenseTensor?,
                               epilogue: Convolution.Epilogue = .none) throws -> DenseTensor {
        let op = "linear"
        guard weight.rank == 2 else {
            throw KernelError.shapeMismatch(operation: op, operand: "weight", expected: "[out, in]", got: weight.shape)
        }
        let outF = weight.shape[0], inF = weight.shape[1]
        guard input.rank == 2, input.shape[1] == inF else {
            throw KernelError.shapeMismatch(operation: op, operand: "input", expected: "[N, \(inF)]", got: input.shape)
        }
        if let b = bias, b.shape != [outF] {
            throw KernelError.shapeMismatch(operation: op, operand: "bias", expected: "[\(outF)]", got: b.shape)
        }
        let n = input.shape[0]
        var out = [Float](repeating: 0, count: n * outF)
        if let b = bias {
            for i in 0 ..< n { for j in 0 ..< outF { out[i * outF + j] = b.values[j] } }
        }
        input.values.withUnsafeBufferPointer { xb in
            weight.values.withUnsafeBufferPointer { wb in
                out.withUnsafeMutableBufferPointer { yb in
                    guard let x = xb.baseAddress, let w = wb.baseAddress, let y = yb.baseAddress else { return }
                    Gemm.multiply(transposeB: true, m: n, n: outF, k: inF, a: x, lda: inF, b: w, ldb: inF,
                                  beta: bias == nil ? 0 : 1, c: y, ldc: outF)
                }
            }
        }
        if case .relu = epilogue {
            for i in out.indices where out[i] < 0 { out[i] = 0 }
        }
        return DenseTensor(uncheckedShape: [n, outF], values: out)
    }
}
