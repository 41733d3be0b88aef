// N images, C channels, H rows, W columns (NCHW).

/// Shape-preserving and shape-only operations: ReLU, residual add, channel concatenation, flatten.
///
/// ReLU's backward needs its output (or input) sign; add and concat need only shapes.
/// PyTorch counterparts: `relu`, `add`, `torch.cat(dim=1)`, `torch.flatten(x, 1)`.
public enum Elementwise {
    /// `max(0, x)`; NaN stays NaN as in torch.
    public static func relu(_ input: consuming DenseTensor) -> DenseTensor {
        var out = consume input
        relu(inPlace: &out)
        return out
    }

    /// `max(0, x)` in place (`relu_`).
    public static func relu(inPlace tensor: inout DenseTensor) {
        tensor.values.withUnsafeMutableBufferPointer { b in
            for i in b.indices where b[i] < 0 { b[i] = 0 }
        }
    }

    /// `a + b` for tensors of one shape, optionally followed by ReLU (ResNet's `out += identity; relu`).
    /// - Throws: `KernelError.shapeMismatch` when the shapes differ.
    /// `a` is consumed: when the caller passes its last use, the sum is written in place.
    public static func add(_ a: consuming DenseTensor, _ b: DenseTensor, epilogue: Convolution.Epilogue = .none) throws -> DenseTensor {
        guard a.shape == b.shape else {
            throw KernelError.shapeMismatch(operation: "add", operand: "second operand", expected: "\(a.shape)", got: b.shape)
        }
        var out = consume a
        let relu = epilogue.isReLU
        out.values.withUnsafeMutableBufferPointer { o in
            b.values.withUnsafeBufferPointer { q in
                guard let op = o.baseAddress, let qp = q.baseAddress else { return }
                let box = UncheckedSendable((op, qp))
                // slices of 64 Ki floats over the cores: a residual add is bound by memory traffic
                let slice = 1 << 16
                let count = o.count
                parallelFor((count + slice - 1) / slice) { part in
                    let (o, q) = box.value
                    let i0 = part * slice, i1 = min(count, i0 + slice)
                    if relu {
                        for i in i0 ..< i1 { o[i] = max(o[i] + q[i], 0) }
                    } else {
                        for i in i0 ..< i1 { o[i] += q[i] }
                    }
                }
            }
        }
        return out
    }

    /// `torch.cat(parts, dim=1)`: parts agree on every dimension but the second.
    /// - Throws: `KernelError.shapeMismatch` naming the first part that does not fit.
    public static func concatenateChannels(_ parts: [DenseTensor]) throws -> DenseTensor {
        guard let first = parts.first, first.rank >= 2 else {
            throw KernelError.invalidArgument(operation: "cat", message: "needs at least one tensor of rank ≥ 2")
        }
        let n = first.shape[0]
        let tail = Array(first.shape.dropFirst(2))
        let inner = tail.reduce(1, *)
        for (i, p) in parts.enumerated() where p.rank != first.rank || p.shape[0] != n || Array(p.shape.dropFirst(2)) != tail {
            throw KernelError.shapeMismatch(operation: "cat", operand: "tensor \(i)", expected: "[\(n), C] + \(tail)", got: p.shape)
        }
        let channels = parts.reduce(0) { $0 + $1.shape[1] }
        var out = [Float]()
        out.reserveCapacity(n * channels * inner)
        for img in 0 ..< n {
            for p in parts {
                let run = p.shape[1] * inner
                out.append(contentsOf: p.values[(img * run) ..< ((img + 1) * run)])
            }
        }
        return DenseTensor(uncheckedShape: [n, channels] + tail, values: out)
    }

    /// `torch.flatten(x, 1)`: `[N, …]` → `[N, product of the rest]`.
    /// - Throws: `KernelError.shapeMismatch` for a 0-dim input.
    public static func flatten(_ input: DenseTensor) throws -> DenseTensor {
        guard let n = input.shape.first else {
            throw KernelError.shapeMismatch(operation: "flatten", operand: "input", expected: "[N, ...]", got: input.shape)
        }
        return DenseTensor(uncheckedShape: [n, input.shape.dropFirst().reduce(1, *)], values: input.values)
    }
}
