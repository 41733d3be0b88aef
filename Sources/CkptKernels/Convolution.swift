// N images, C channels, H rows, W columns (NCHW); weights are [C_out, C_in/groups, kH, kW].

/// 2-d convolution as im2col + GEMM, with a plain GEMM for pointwise (1×1, stride 1) kernels.
///
/// Forward caches nothing; a backward beside it needs the input (for `dWeight`) and the weight
/// (for `dInput`), which the caller keeps. PyTorch counterpart: `torch.nn.functional.conv2d`.
public enum Convolution {
    /// What the convolution does to its result before returning it.
    public enum Epilogue: Sendable {
        /// Nothing beyond the bias.
        case none
        /// `max(0, ·)` on every element: a ReLU fused into the write-out.
        case relu

        /// True for `.relu`.
        var isReLU: Bool {
            if case .relu = self { return true }
            return false
        }
    }

    /// `y = conv2d(x, weight, bias)` for `x` of shape `[N, C_in, H, W]`.
    ///
    /// - Parameters:
    ///   - input: `[N, C_in, H, W]`.
    ///   - weight: `[C_out, C_in/groups, kH, kW]`.
    ///   - bias: `[C_out]`, or nil.
    ///   - geometry: stride, padding, dilation and groups.
    ///   - epilogue: an activation fused into the output pass.
    ///   - packed: `weight` packed by `Convolution.pack` (callers that run a weight many times keep
    ///     it); packed here when nil and the microkernel is in use.
    ///   - residual: `[N, C_out, H_out, W_out]` added to the result before the epilogue (ResNet's
    ///     `out += identity; relu(out)` fused into the write-out), or nil.
    /// - Returns: `[N, C_out, H_out, W_out]`.
    /// - Throws: `KernelError` when a shape does not fit the geometry.
    public static func forward(
        _ input: DenseTensor, weight: DenseTensor, bias: DenseTensor?,
        geometry g: Conv2dGeometry, epilogue: Epilogue = .none, packed: PackedWeights? = nil, residual: DenseTensor? = nil
    ) throws -> DenseTensor {
        let (n, _, h, w) = try g.checkOperands("conv2d", input: input, weight: weight, bias: bias, transposed: false)
        let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
        try checkResidual(residual, "conv2d", shape: [n, g.outputChannels, oh, ow])
        return try withResidual(residual) { r in
            try forward(input, weight: weight, bias: bias, geometry: g, epilogue: epilogue, packed: packed, residual: r,
                        outputSize: (oh, ow))
        }
    }

    /// Throws unless `residual` is nil or of `shape`.
    static func checkResidual(_ residual: DenseTensor?, _ operation: String, shape: [Int]) throws {
        if let r = residual, r.shape != shape {
            throw KernelError.shapeMismatch(operation: operation, operand: "residual", expected: "\(shape)", got: r.shape)
        }
    }

    /// `body` given a pointer to `residual`'s values (nil for no residual or an empty one).
    static func withResidual<R>(_ residual: DenseTensor?, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        guard let residual else { return try body(nil) }
        return try residual.values.withUnsafeBufferPointer { try body($0.baseAddress) }
    }

    /// `forward` with the residual (checked, of the output's shape) as a pointer to its first value.
    private static func forward(
        _ input: DenseTensor, weight: DenseTensor, bias: DenseTensor?, geometry g: Conv2dGeometry, epilogue: Epilogue,
        packed: PackedWeights?, residual: UnsafePointer<Float>?, outputSize: (Int, Int)
    ) throws -> DenseTensor {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = outputSize
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let kdim = cinG * g.kernelSize.height * g.kernelSize.width
        let plane = oh * ow
        let packed = packed.flatMap { $0.rows == coutG && $0.columns == kdim && $0.matrices.count == groups ? $0 : nil }
            ?? Microkernel.pack(weight.values, groups: groups, rows: coutG, columns: kdim)
        // every element of both buffers is written before it is read: skip zero-filling
        var out = [Float].uninitialized(n * g.outputChannels * plane)
        let pointwise = g.isPointwise
        if let p = packed, !pointwise, readsPaddedInput(g, images: n, height: h, width: w) {
            forwardShifted(input, packed: p, bias: bias?.values, output: &out, geometry: g, outputSize: (oh, ow),
                           relu: epilogue.isReLU, residual: residual)
            return DenseTensor(uncheckedShape: [n, g.outputChannels, oh, ow], values: out)
        }
        if let p = packed, !pointwise {
            let relu = epilogue.isReLU
            forwardPanels(input, packed: p, bias: bias?.values, output: &out, geometry: g, outputSize: (oh, ow), relu: relu,
                          residual: residual)
            return DenseTensor(uncheckedShape: [n, g.outputChannels, oh, ow], values: out)
        }
        // small planes make thin GEMMs: unfold several images side by side into one matrix
        let imagesPerGEMM = plane >= 1024 ? 1 : max(1, min(n, Convolution.columnBudget / max(kdim * plane, 1)))
        if imagesPerGEMM > 1 {
            try forwardImageBatched(input, weight: weight, packed: packed, output: &out, geometry: g, outputSize: (oh, ow),
                                    imagesPerGEMM: imagesPerGEMM)
            applyBiasAndEpilogue(&out, bias: bias?.values, channels: g.outputChannels, plane: plane,
                                 epilogue: residual == nil ? epilogue : .none)
            addResidual(&out, residual, relu: epilogue.isReLU)
            return DenseTensor(uncheckedShape: [n, g.outputChannels, oh, ow], values: out)
        }
        // unfold a band of output rows at a time so the column matrix stays in cache
        let budgetRows = max(1, min(oh, Convolution.columnBudget / max(kdim * ow, 1)))
        let workers = Gemm.threadCount
        // equal bands, a multiple of the core count per image and group, so each core can take
        // whole bands (unfold, single-threaded GEMM, epilogue) without waiting for the other
        let split = (((oh + budgetRows - 1) / budgetRows + workers - 1) / workers) * workers
        let splitRows = (oh + split - 1) / split
        if workers > 1 && splitRows * ow >= 256 {
            let relu = epilogue.isReLU
            forwardBandParallel(input, weight: weight, packed: packed, bias: bias?.values, output: &out, geometry: g,
                                outputSize: (oh, ow), bandRows: splitRows, lanes: workers, relu: relu, residual: residual)
            return DenseTensor(uncheckedShape: [n, g.outputChannels, oh, ow], values: out)
        }
        let bandRows = budgetRows
        var columns = [Float].uninitialized(pointwise ? 0 : kdim * bandRows * ow)
        let relu = epilogue.isReLU

        input.values.withUnsafeBufferPointer { xb in
            weight.values.withUnsafeBufferPointer { wb in
                out.withUnsafeMutableBufferPointer { yb in
                    columns.withUnsafeMutableBufferPointer { cb in
                        guard let x = xb.baseAddress, let wt = wb.baseAddress, let y = yb.baseAddress else { return }
                        for img in 0 ..< n {
                            for grp in 0 ..< groups {
                                let xg = x + (img * c + grp * cinG) * h * w
                                let yg = y + (img * g.outputChannels + grp * coutG) * plane
                                let wg = wt + grp * coutG * kdim
                                if pointwise {
                                    multiplyWeights(packed, group: grp, weight: wg, m: coutG, n: plane, k: kdim, b: xg, ldb: plane,
                                            c: yg, ldc: plane, threaded: true)
                                    finishBand(yg, channels: coutG, width: plane, stride: plane,
                                               bias: bias.map { b in { b.values[grp * coutG + $0] } }, relu: relu,
                                               residual: residual.map { $0 + (yg - y) })
                                    continue
                                }
                                guard let col = cb.baseAddress else { continue }
                                var y0 = 0
                                while y0 < oh {
                                    let y1 = min(oh, y0 + bandRows)
                                    let width = (y1 - y0) * ow
                                    Im2col.unfold(input: xg, channels: cinG, height: h, width: w, geometry: g,
                                                  outputHeight: oh, outputWidth: ow, rows: y0 ..< y1, into: col)
                                    multiplyWeights(packed, group: grp, weight: wg, m: coutG, n: width, k: kdim, b: col, ldb: width,
                                            c: yg + y0 * ow, ldc: plane, threaded: true)
                                    // bias and activation while the band is still in cache
                                    finishBand(yg + y0 * ow, channels: coutG, width: width, stride: plane,
                                               bias: bias.map { b in { b.values[grp * coutG + $0] } }, relu: relu,
                                               residual: residual.map { $0 + (yg - y) + y0 * ow })
                                    y0 = y1
                                }
                            }
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [n, g.outputChannels, oh, ow], values: out)
    }

    /// The one-image-per-GEMM convolution with bands of `bandRows` output rows dealt out to
    /// `lanes` threads, each unfolding into its own column buffer and running single-threaded
    /// GEMMs: no hand-over between our threads and OpenBLAS's, and each band stays in one core's cache.
    static func forwardBandParallel(
        _ input: DenseTensor, weight: DenseTensor, packed: PackedWeights?, bias: [Float]?, output out: inout [Float], geometry g: Conv2dGeometry,
        outputSize: (Int, Int), bandRows: Int, lanes: Int, relu: Bool, residual: UnsafePointer<Float>? = nil
    ) {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = outputSize
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let kdim = cinG * g.kernelSize.height * g.kernelSize.width
        let plane = oh * ow
        let pointwise = g.isPointwise
        let bandsPerPlane = (oh + bandRows - 1) / bandRows
        let jobs = n * groups * bandsPerPlane
        let laneFloats = pointwise ? 0 : kdim * bandRows * ow
        let laneStride = (laneFloats + 15) / 16 * 16  // keeps every lane's buffer 64-byte aligned
        input.values.withUnsafeBufferPointer { xb in
            weight.values.withUnsafeBufferPointer { wb in
                out.withUnsafeMutableBufferPointer { yb in
                    withUnsafeTemporaryAllocation(byteCount: max(1, lanes * laneStride) * 4, alignment: 64) { cb in
                        guard let x = xb.baseAddress, let wt = wb.baseAddress, let y = yb.baseAddress else { return }
                        let columnBase = cb.baseAddress?.bindMemory(to: Float.self, capacity: lanes * laneStride)
                        let box = UncheckedSendable((x, wt, y, columnBase, residual))
                        Gemm.withThreadCount(1) {
                            parallelFor(lanes) { lane in
                                let (x, wt, y, columnBase, residual) = box.value
                                var job = lane
                                while job < jobs {
                                    defer { job += lanes }
                                    let band = job % bandsPerPlane
                                    let grp = (job / bandsPerPlane) % groups
                                    let img = job / (bandsPerPlane * groups)
                                    let xg = x + (img * c + grp * cinG) * h * w
                                    let yg = y + (img * g.outputChannels + grp * coutG) * plane
                                    let wg = wt + grp * coutG * kdim
                                    let y0 = band * bandRows, y1 = min(oh, y0 + bandRows)
                                    let width = (y1 - y0) * ow
                                    if pointwise {
                                        multiplyWeights(packed, group: grp, weight: wg, m: coutG, n: width, k: kdim, b: xg + y0 * ow,
                                                        ldb: plane, c: yg + y0 * ow, ldc: plane, threaded: false)
                                    } else {
                                        guard let cbase = columnBase else { continue }
                                        let col = cbase + lane * laneStride
                                        Im2col.unfold(input: xg, channels: cinG, height: h, width: w, geometry: g,
                                                      outputHeight: oh, outputWidth: ow, rows: y0 ..< y1, threaded: false, into: col)
                                        multiplyWeights(packed, group: grp, weight: wg, m: coutG, n: width, k: kdim, b: col,
                                                        ldb: width, c: yg + y0 * ow, ldc: plane, threaded: false)
                                    }
                                    finishBand(yg + y0 * ow, channels: coutG, width: width, stride: plane,
                                               bias: bias.map { b in { b[grp * coutG + $0] } }, relu: relu,
                                               residual: residual.map { $0 + (yg - y) + y0 * ow })
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The convolution on the microkernel as an implicit GEMM (`PanelSchedule`): each chunk of
    /// output pixels is unfolded straight into panel layout, multiplied by the packed weight, and
    /// written out through the bias, the residual and ReLU.
    static func forwardPanels(
        _ input: DenseTensor, packed: PackedWeights, bias: [Float]?, output out: inout [Float], geometry g: Conv2dGeometry,
        outputSize: (Int, Int), relu: Bool, residual: UnsafePointer<Float>? = nil
    ) {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = outputSize
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let plane = oh * ow
        let schedule = PanelSchedule(pixels: n * plane, depth: packed.columns, rows: coutG, groups: groups)
        let chunk = schedule.chunk
        input.values.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { yb in
                guard let x = xb.baseAddress, let y = yb.baseAddress else { return }
                let box = UncheckedSendable((x, y, residual))
                schedule.run { job, panels, product in
                    let (x, y, residual) = box.value
                    let grp = job.group, i0 = job.pixels.lowerBound, i1 = job.pixels.upperBound
                    let (p0, p1) = (job.rowPanels.lowerBound, job.rowPanels.upperBound)
                    Microkernel.unfold(x + grp * cinG * h * w, imageStride: c * h * w, channels: cinG,
                                       height: h, width: w, geometry: g, outputHeight: oh, outputWidth: ow,
                                       pixels: job.pixels, into: panels)
                    Microkernel.multiply(packed, group: grp, panels: panels, n: i1 - i0, c: product, ldc: chunk,
                                         rowPanels: job.rowPanels)
                    // run by run within one image
                    var i = i0
                    while i < i1 {
                        let img = i / plane, q = i % plane
                        let count = min(plane - q, i1 - i)
                        let offset = (img * g.outputChannels + grp * coutG) * plane + q
                        storeRun(product + (i - i0), chunk: chunk, rows: min(coutG, p0 * 8) ..< min(coutG, p1 * 8),
                                 to: y + offset, plane: plane, count: count, bias: bias, biasOffset: grp * coutG, relu: relu,
                                 residual: residual.map { $0 + offset })
                        i += count
                    }
                }
            }
        }
    }

    /// `y[o·plane + k] = relu?(product[o·chunk + k] + bias[biasOffset + o] (+ residual[o·plane + k]))`
    /// for `k < count` and the output channels `o` in `rows`: one run of a microkernel product written
    /// out to NCHW planes (`residual` laid out as `y`).
    @inline(__always)
    static func storeRun(_ product: UnsafePointer<Float>, chunk: Int, rows: Range<Int>, to y: UnsafeMutablePointer<Float>,
                         plane: Int, count: Int, bias: [Float]?, biasOffset: Int, relu: Bool, residual: UnsafePointer<Float>? = nil) {
        for o in rows {
            let src = product + o * chunk
            let dst = y + o * plane
            let beta = bias?[biasOffset + o] ?? 0
            if let r = residual.map({ $0 + o * plane }) {
                // rounded as the unfused add: (conv + bias) + residual
                if relu {
                    for k in 0 ..< count { dst[k] = max(src[k] + beta + r[k], 0) }
                } else {
                    for k in 0 ..< count { dst[k] = src[k] + beta + r[k] }
                }
            } else if relu {
                for k in 0 ..< count { dst[k] = max(src[k] + beta, 0) }
            } else {
                for k in 0 ..< count { dst[k] = src[k] + beta }
            }
        }
    }

    /// Adds the bias (and `residual`, laid out as `y`) and applies ReLU to `channels` rows of `width`
    /// floats spaced `stride` apart.
    static func finishBand(_ y: UnsafeMutablePointer<Float>, channels: Int, width: Int, stride: Int,
                           bias: ((Int) -> Float)?, relu: Bool, residual: UnsafePointer<Float>? = nil) {
        if bias == nil && !relu && residual == nil { return }
        for o in 0 ..< channels {
            let row = y + o * stride
            let beta = bias?(o) ?? 0
            if let r = residual.map({ $0 + o * stride }) {
                if relu {
                    for i in 0 ..< width { row[i] = max(row[i] + beta + r[i], 0) }
                } else {
                    for i in 0 ..< width { row[i] = row[i] + beta + r[i] }
                }
            } else if relu {
                for i in 0 ..< width { row[i] = max(row[i] + beta, 0) }
            } else {
                for i in 0 ..< width { row[i] += beta }
            }
        }
    }

    /// The convolution with `imagesPerGEMM` images unfolded side by side per GEMM; the product
    /// `[C_out/g, images·plane]` is then scattered to each image's NCHW planes.
    static func forwardImageBatched(
        _ input: DenseTensor, weight: DenseTensor, packed: PackedWeights?, output out: inout [Float], geometry g: Conv2dGeometry,
        outputSize: (Int, Int), imagesPerGEMM: Int
    ) throws {
        let (n, c, h, w) = try input.nchw(for: "conv2d")
        let (oh, ow) = outputSize
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let kdim = cinG * g.kernelSize.height * g.kernelSize.width
        let plane = oh * ow
        let pointwise = g.isPointwise
        var columns = [Float].uninitialized(kdim * imagesPerGEMM * plane)
        var product = [Float].uninitialized(coutG * imagesPerGEMM * plane)
        input.values.withUnsafeBufferPointer { xb in
            weight.values.withUnsafeBufferPointer { wb in
                out.withUnsafeMutableBufferPointer { yb in
                    columns.withUnsafeMutableBufferPointer { cb in
                        product.withUnsafeMutableBufferPointer { pb in
                            guard let x = xb.baseAddress, let wt = wb.baseAddress, let y = yb.baseAddress,
                                  let col = cb.baseAddress, let prod = pb.baseAddress else { return }
                            var i0 = 0
                            while i0 < n {
                                let count = min(imagesPerGEMM, n - i0)
                                let width = count * plane
                                for grp in 0 ..< groups {
                                    for j in 0 ..< count {
                                        let xg = x + ((i0 + j) * c + grp * cinG) * h * w
                                        if pointwise {
                                            for r in 0 ..< kdim { (col + r * width + j * plane).update(from: xg + r * plane, count: plane) }
                                        } else {
                                            Im2col.unfold(input: xg, channels: cinG, height: h, width: w, geometry: g,
                                                          outputHeight: oh, outputWidth: ow, rowStride: width,
                                                          into: col + j * plane)
                                        }
                                    }
                                    multiplyWeights(packed, group: grp, weight: wt + grp * coutG * kdim, m: coutG, n: width, k: kdim,
                                            b: col, ldb: width, c: prod, ldc: width, threaded: true)
                                    for j in 0 ..< count {
                                        let yg = y + ((i0 + j) * g.outputChannels + grp * coutG) * plane
                                        for o in 0 ..< coutG { (yg + o * plane).update(from: prod + o * width + j * plane, count: plane) }
                                    }
                                }
                                i0 += count
                            }
                        }
                    }
                }
            }
        }
    }

    /// `C = W[group] · B` on the microkernel when `packed` is given, else on OpenBLAS from `weight`.
    @inline(__always)
    static func multiplyWeights(_ packed: PackedWeights?, group: Int, weight: UnsafePointer<Float>, m: Int, n: Int, k: Int,
                        b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, threaded: Bool) {
        if let p = packed {
            if threaded {
                Microkernel.multiplyThreaded(p, group: group, b: b, ldb: ldb, n: n, c: c, ldc: ldc)
            } else {
                Microkernel.multiply(p, group: group, b: b, ldb: ldb, n: n, c: c, ldc: ldc)
            }
            return
        }
        Gemm.multiply(m: m, n: n, k: k, a: weight, lda: k, b: b, ldb: ldb, c: c, ldc: ldc)
    }

    /// `weight` (`[C_out, C_in/groups, kH, kW]`) packed for the microkernel, or nil when it is not in use.
    public static func pack(weight: DenseTensor, geometry g: Conv2dGeometry) -> PackedWeights? {
        let coutG = g.outputChannels / max(g.groups, 1)
        let kdim = g.inputChannels / max(g.groups, 1) * g.kernelSize.height * g.kernelSize.width
        return Microkernel.pack(weight.values, groups: g.groups, rows: coutG, columns: kdim)
    }

    /// Floats of im2col columns unfolded at once (4 MiB): large enough for efficient GEMMs,
    /// small enough to stay in the last-level cache instead of streaming 100 MB for VGG's first layers.
    static let columnBudget = 1 << 20

    /// `values = relu?(values + residual)` when `residual` (as many floats) is given: the fused
    /// residual for the paths that write their result before adding it.
    static func addResidual(_ values: inout [Float], _ residual: UnsafePointer<Float>?, relu: Bool) {
        guard let residual else { return }
        values.withUnsafeMutableBufferPointer { vb in
            guard let v = vb.baseAddress else { return }
            finishBand(v, channels: 1, width: vb.count, stride: vb.count, bias: nil, relu: relu, residual: residual)
        }
    }

    /// Adds `bias[c]` to every element of channel `c` and applies `epilogue`, in one pass.
    static func applyBiasAndEpilogue(_ values: inout [Float], bias: [Float]?, channels: Int, plane: Int, epilogue: Epilogue) {
        if bias == nil, case .none = epilogue { return }
        let planes = plane == 0 ? 0 : values.count / plane
        let relu = epilogue.isReLU
        values.withUnsafeMutableBufferPointer { vb in
            guard let v = vb.baseAddress else { return }
            let box = UncheckedSendable(v)
            parallelFor(planes, minimumWork: 8) { p in
                let row = box.value + p * plane
                let beta = bias?[p % channels] ?? 0
                if relu {
                    for i in 0 ..< plane { row[i] = max(row[i] + beta, 0) }
                } else {
                    for i in 0 ..< plane { row[i] += beta }
                }
            }
        }
    }
}
