internal import CkptAVX512

// N images, C channels, H rows, W columns (NCHW).

extension Pooling {
    /// `max_pool2d_with_indices(x)`: the output and, per output element, the flat index within its
    /// input plane of the element that won (the first largest in scan order; a NaN wins, the last
    /// one when there are several, as ATen's `val > maxval || isnan(val)` scan), which is all the
    /// backward needs. PyTorch counterpart: `torch.nn.functional.max_pool2d(return_indices=True)`.
    /// - Throws: `KernelError` when the input is not NCHW or the geometry is invalid.
    public static func maxForwardWithIndices(_ input: DenseTensor, geometry g: PoolGeometry) throws -> (output: DenseTensor, indices: [Int32]) {
        let op = "max_pool2d"
        let (n, c, h, w) = try input.nchw(for: op)
        let oh = try g.outputLength(h, operation: op), ow = try g.outputLength(w, operation: op)
        guard h * w <= Int(Int32.max) else {
            throw KernelError.invalidArgument(operation: op, message: "plane of \(h)×\(w) is too large for indices")
        }
        var out = [Float].uninitialized(n * c * oh * ow)
        var indices = [Int32].uninitialized(n * c * oh * ow)  // every window writes its index
        input.values.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { yb in
                indices.withUnsafeMutableBufferPointer { ib in
                    guard let x = xb.baseAddress, let y = yb.baseAddress, let ix = ib.baseAddress else { return }
                    let box = UncheckedSendable((x, y, ix))
                    let avx512 = BatchNormalization.onAVX512
                    parallelForWork(n * c, elementsPerItem: h * w) { p in
                        let (x, y, ix) = box.value
                        let (src, dst, idx) = (x + p * h * w, y + p * oh * ow, ix + p * oh * ow)
                        if avx512 {
                            MaxPoolPlanes.withIndicesAVX512(src, height: h, width: w, into: dst, indices: idx, outputHeight: oh,
                                                            outputWidth: ow, kernel: g.kernelSize, stride: g.stride,
                                                            padding: g.padding, dilation: g.dilation)
                        } else {
                            MaxPoolPlanes.withIndices(src, height: h, width: w, into: dst, indices: idx, outputHeight: oh,
                                                      outputWidth: ow, kernel: g.kernelSize, stride: g.stride,
                                                      padding: g.padding, dilation: g.dilation)
                        }
                    }
                }
            }
        }
        return (DenseTensor(uncheckedShape: [n, c, oh, ow], values: out), indices)
    }

    /// `dInput` of max pooling: each output gradient added to the input element that won its window.
    /// - Throws: `KernelError.shapeMismatch` when the gradient and indices do not match.
    public static func maxBackward(_ dOutput: DenseTensor, indices: [Int32], inputShape: [Int]) throws -> DenseTensor {
        let op = "max_pool2d backward"
        guard inputShape.count == 4, dOutput.rank == 4, dOutput.shape[0 ..< 2] == inputShape[0 ..< 2],
              indices.count == dOutput.count else {
            throw KernelError.shapeMismatch(operation: op, operand: "output gradient", expected: "[\(inputShape.prefix(2)), H, W]", got: dOutput.shape)
        }
        let planes = inputShape[0] * inputShape[1]
        let inPlane = inputShape[2] * inputShape[3]
        let outPlane = dOutput.shape[2] * dOutput.shape[3]
        // each plane zeroed by the thread that scatters into it, while it is in that core's cache
        var dx = [Float].uninitialized(planes * inPlane)
        dOutput.values.withUnsafeBufferPointer { gb in
            indices.withUnsafeBufferPointer { ib in
                dx.withUnsafeMutableBufferPointer { xb in
                    guard let gy = gb.baseAddress, let ix = ib.baseAddress, let dxp = xb.baseAddress else { return }
                    let box = UncheckedSendable((gy, ix, dxp))
                    parallelForWork(planes, elementsPerItem: inPlane) { p in
                        let (gy, ix, dxp) = box.value
                        let dst = dxp + p * inPlane
                        dst.initialize(repeating: 0, count: inPlane)
                        for i in 0 ..< outPlane { dst[Int(ix[p * outPlane + i])] += gy[p * outPlane + i] }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: inputShape, values: dx)
    }

    /// `dInput` of `avg_pool2d` with the forward's divisor rule (padding cells counted when
    /// `countIncludePad`, cells past the padding never).
    /// - Throws: `KernelError` when the shapes do not fit the geometry.
    public static func averageBackward(_ dOutput: DenseTensor, inputShape: [Int], geometry g: PoolGeometry,
                                       countIncludePad: Bool = true) throws -> DenseTensor {
        let op = "avg_pool2d backward"
        guard inputShape.count == 4 else {
            throw KernelError.shapeMismatch(operation: op, operand: "input", expected: "[N, C, H, W]", got: inputShape)
        }
        let (n, c, h, w) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        let oh = try g.outputLength(h, operation: op), ow = try g.outputLength(w, operation: op)
        guard dOutput.shape == [n, c, oh, ow] else {
            throw KernelError.shapeMismatch(operation: op, operand: "output gradient", expected: "\([n, c, oh, ow])", got: dOutput.shape)
        }
        var dx = [Float](repeating: 0, count: n * c * h * w)
        dOutput.values.withUnsafeBufferPointer { gb in
            dx.withUnsafeMutableBufferPointer { xb in
                guard let gy = gb.baseAddress, let dxp = xb.baseAddress else { return }
                let box = UncheckedSendable((gy, dxp))
                parallelForWork(n * c, elementsPerItem: h * w) { p in
                    let src = box.value.0 + p * oh * ow
                    let dst = box.value.1 + p * h * w
                    for oy in 0 ..< oh {
                        let (y0, y1, rows) = g.averageWindow(oy, size: h)
                        for ox in 0 ..< ow {
                            let (x0, x1, cols) = g.averageWindow(ox, size: w)
                            let divisor = countIncludePad ? rows * cols : max(y1 - y0, 0) * max(x1 - x0, 0)
                            guard divisor > 0 else { continue }
                            let share = src[oy * ow + ox] / Float(divisor)
                            for iy in y0 ..< max(y0, y1) {
                                for ix in x0 ..< max(x0, x1) { dst[iy * w + ix] += share }
                            }
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: inputShape, values: dx)
    }

    /// `dInput` of `adaptive_avg_pool2d`: each output gradient spread evenly over its window.
    /// - Throws: `KernelError` when the shapes do not fit.
    public static func adaptiveAverageBackward(_ dOutput: DenseTensor, inputShape: [Int]) throws -> DenseTensor {
        let op = "adaptive_avg_pool2d backward"
        guard inputShape.count == 4, dOutput.rank == 4, dOutput.shape[0 ..< 2] == inputShape[0 ..< 2] else {
            throw KernelError.shapeMismatch(operation: op, operand: "output gradient", expected: "[\(inputShape.prefix(2)), H, W]", got: dOutput.shape)
        }
        let (n, c, h, w) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        let (oh, ow) = (dOutput.shape[2], dOutput.shape[3])
        var dx = [Float](repeating: 0, count: n * c * h * w)
        dOutput.values.withUnsafeBufferPointer { gb in
            dx.withUnsafeMutableBufferPointer { xb in
                guard let gy = gb.baseAddress, let dxp = xb.baseAddress else { return }
                let box = UncheckedSendable((gy, dxp))
                parallelForWork(n * c, elementsPerItem: h * w) { p in
                    let src = box.value.0 + p * oh * ow
                    let dst = box.value.1 + p * h * w
                    for oy in 0 ..< oh {
                        let rows = adaptiveWindow(oy, size: h, outputs: oh)
                        for ox in 0 ..< ow {
                            let cols = adaptiveWindow(ox, size: w, outputs: ow)
                            let share = src[oy * ow + ox] / Float(rows.count * cols.count)
                            for iy in rows {
                                for ix in cols { dst[iy * w + ix] += share }
                            }
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: inputShape, values: dx)
    }
}
