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
        var indices = [Int32](repeating: 0, count: n * c * oh * ow)
        input.values.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { yb in
                indices.withUnsafeMutableBufferPointer { ib in
                    guard let x = xb.baseAddress, let y = yb.baseAddress, let ix = ib.baseAddress else { return }
                    let box = UncheckedSendable((x, y, ix))
                    let k = g.kernelSize, d = g.dilation
                    // outputs [inner0, inner1) of a row have every window column inside it, and (stride 2)
                    // their 16-float loads too: eight at a time there, without a branch per element
                    let vectorised = g.stride == 2 && d == 1
                    let inner0 = min(ow, (g.padding + 1) / 2)
                    let inner1 = max(inner0, min(ow, (w + g.padding - k - 1) / 2 + 1))
                    parallelFor(n * c, minimumWork: 8) { p in
                        let (x, y, ix) = box.value
                        let src = x + p * h * w
                        let dst = y + p * oh * ow
                        let idx = ix + p * oh * ow
                        for oy in 0 ..< oh {
                            let y0 = oy * g.stride - g.padding
                            let k0 = y0 < 0 ? (-y0 + d - 1) / d : 0
                            let k1 = min(k, (h - y0 + d - 1) / d)
                            var first = 0
                            if vectorised {
                                var ox = inner0
                                while ox + 8 <= inner1 {
                                    maxWindows8(src, width: w, rows: (y0 + k0) ..< (y0 + k1), firstColumn: 2 * ox - g.padding,
                                                kernel: k, into: dst + oy * ow + ox, indices: idx + oy * ow + ox)
                                    ox += 8
                                }
                                // the scalar loop below does the rest of the row
                                first = ox
                            }
                            for ox in 0 ..< ow where !(ox >= inner0 && ox < first) {
                                let x0 = ox * g.stride - g.padding
                                let j0 = x0 < 0 ? (-x0 + d - 1) / d : 0
                                let j1 = min(k, (w - x0 + d - 1) / d)
                                var m = -Float.infinity
                                var best = (y0 + k0 * d) * w + x0 + j0 * d
                                var ki = k0
                                while ki < k1 {
                                    let rowStart = (y0 + ki * d) * w + x0
                                    for kj in j0 ..< j1 {
                                        let v = src[rowStart + kj * d]
                                        // no early exit at a NaN: a later NaN takes the index, as in ATen
                                        if v > m || v.isNaN {
                                            m = v
                                            best = rowStart + kj * d
                                        }
                                    }
                                    ki += 1
                                }
                                dst[oy * ow + ox] = m
                                idx[oy * ow + ox] = Int32(best)
                            }
                        }
                    }
                }
            }
        }
        return (DenseTensor(uncheckedShape: [n, c, oh, ow], values: out), indices)
    }

    /// Eight stride-2 windows whose columns `firstColumn + 2i ..< firstColumn + 2i + kernel` (and
    /// the 16-float loads reading them) lie inside the plane: their max and its index, scanned as
    /// `maxForwardWithIndices` scans (rows then columns, a larger element or a NaN takes over).
    @inline(__always)
    private static func maxWindows8(_ src: UnsafePointer<Float>, width w: Int, rows: Range<Int>, firstColumn x0: Int, kernel k: Int,
                                    into dst: UnsafeMutablePointer<Float>, indices idx: UnsafeMutablePointer<Int32>) {
        let lanes = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
        var m = SIMD8<Float>(repeating: -.infinity)
        var best = SIMD8<Int32>(repeating: Int32(rows.lowerBound * w + x0)) &+ lanes
        for r in rows {
            let rowStart = r * w + x0
            for kj in 0 ..< k {
                let v = UnsafeRawPointer(src + rowStart + kj).loadUnaligned(as: SIMD16<Float>.self).evenHalf
                let wins = (v .> m) .| (v .!= v)
                m.replace(with: v, where: wins)
                best.replace(with: SIMD8<Int32>(repeating: Int32(rowStart + kj)) &+ lanes, where: wins)
            }
        }
        UnsafeMutableRawPointer(dst).storeBytes(of: m, as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(idx).storeBytes(of: best, as: SIMD8<Int32>.self)
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
        var dx = [Float](repeating: 0, count: planes * inPlane)
        dOutput.values.withUnsafeBufferPointer { gb in
            indices.withUnsafeBufferPointer { ib in
                dx.withUnsafeMutableBufferPointer { xb in
                    guard let gy = gb.baseAddress, let ix = ib.baseAddress, let dxp = xb.baseAddress else { return }
                    let box = UncheckedSendable((gy, ix, dxp))
                    parallelFor(planes, minimumWork: 8) { p in
                        let (gy, ix, dxp) = box.value
                        let dst = dxp + p * inPlane
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
                parallelFor(n * c, minimumWork: 8) { p in
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
                parallelFor(n * c, minimumWork: 8) { p in
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
