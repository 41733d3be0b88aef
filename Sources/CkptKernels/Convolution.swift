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
    }

    /// `y = conv2d(x, weight, bias)` for `x` of shape `[N, C_in, H, W]`.
    ///
    /// - Parameters:
    ///   - input: `[N, C_in, H, W]`.
    ///   - weight: `[C_out, C_in/groups, kH, kW]`.
    ///   - bias: `[C_out]`, or nil.
    ///   - geometry: stride, padding, dilation and groups.
    ///   - epilogue: an activation fused into the output pass.
    /// - Returns: `[N, C_out, H_out, W_out]`.
    /// - Throws: `KernelError` when a shape does not fit the geometry.
    public static func forward(
        _ input: DenseTensor, weight: DenseTensor, bias: DenseTensor?,
        geometry g: Conv2dGeometry, epilogue: Epilogue = .none
    ) throws -> DenseTensor {
        let op = "conv2d"
        try g.validate(operation: op)
        let (n, c, h, w) = try input.nchw(for: op)
        guard c == g.inputChannels else {
            throw KernelError.shapeMismatch(operation: op, operand: "input", expected: "[N, \(g.inputChannels), H, W]", got: input.shape)
        }
        guard weight.shape == g.convolutionWeightShape else {
            throw KernelError.shapeMismatch(operation: op, operand: "weight", expected: "\(g.convolutionWeightShape)", got: weight.shape)
        }
        if let b = bias, b.shape != [g.outputChannels] {
            throw KernelError.shapeMismatch(operation: op, operand: "bias", expected: "[\(g.outputChannels)]", got: b.shape)
        }
        let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let kdim = cinG * g.kernelSize.height * g.kernelSize.width
        let plane = oh * ow
        // every element of both buffers is written before it is read: skip zero-filling
        var out = [Float].uninitialized(n * g.outputChannels * plane)
        let pointwise = g.isPointwise
        // small planes make thin GEMMs: unfold several images side by side into one matrix
        let imagesPerGEMM = plane >= 1024 ? 1 : max(1, min(n, Convolution.columnBudget / max(kdim * plane, 1)))
        if imagesPerGEMM > 1 {
            try forwardImageBatched(input, weight: weight, output: &out, geometry: g, outputSize: (oh, ow),
                                    imagesPerGEMM: imagesPerGEMM)
            applyBiasAndEpilogue(&out, bias: bias?.values, channels: g.outputChannels, plane: plane, epilogue: epilogue)
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
            let relu: Bool
            switch epilogue {
            case .none: relu = false
            case .relu: relu = true
            }
            forwardBandParallel(input, weight: weight, bias: bias?.values, output: &out, geometry: g,
                                outputSize: (oh, ow), bandRows: splitRows, lanes: workers, relu: relu)
            return DenseTensor(uncheckedShape: [n, g.outputChannels, oh, ow], values: out)
        }
        let bandRows = budgetRows
        var columns = [Float].uninitialized(pointwise ? 0 : kdim * bandRows * ow)
        let relu: Bool
        switch epilogue {
        case .none: relu = false
        case .relu: relu = true
        }

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
                                    Gemm.multiply(m: coutG, n: plane, k: kdim, a: wg, lda: kdim,
                                                  b: xg, ldb: plane, c: yg, ldc: plane)
                                    finishBand(yg, channels: coutG, width: plane, stride: plane,
                                               bias: bias.map { b in { b.values[grp * coutG + $0] } }, relu: relu)
                                    continue
                                }
                                guard let col = cb.baseAddress else { continue }
                                var y0 = 0
                                while y0 < oh {
                                    let y1 = min(oh, y0 + bandRows)
                                    let width = (y1 - y0) * ow
                                    Im2col.unfold(input: xg, channels: cinG, height: h, width: w, geometry: g,
                                                  outputHeight: oh, outputWidth: ow, rows: y0 ..< y1, into: col)
                                    Gemm.multiply(m: coutG, n: width, k: kdim, a: wg, lda: kdim,
                                                  b: col, ldb: width, c: yg + y0 * ow, ldc: plane)
                                    // bias and activation while the band is still in cache
                                    finishBand(yg + y0 * ow, channels: coutG, width: width, stride: plane,
                                               bias: bias.map { b in { b.values[grp * coutG + $0] } }, relu: relu)
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
        _ input: DenseTensor, weight: DenseTensor, bias: [Float]?, output out: inout [Float], geometry g: Conv2dGeometry,
        outputSize: (Int, Int), bandRows: Int, lanes: Int, relu: Bool
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
        var columns = [Float].uninitialized(lanes * laneFloats)
        input.values.withUnsafeBufferPointer { xb in
            weight.values.withUnsafeBufferPointer { wb in
                out.withUnsafeMutableBufferPointer { yb in
                    columns.withUnsafeMutableBufferPointer { cb in
                        guard let x = xb.baseAddress, let wt = wb.baseAddress, let y = yb.baseAddress else { return }
                        let box = UncheckedSendable((x, wt, y, cb.baseAddress))
                        Gemm.withThreadCount(1) {
                            parallelFor(lanes) { lane in
                                let (x, wt, y, columnBase) = box.value
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
                                        Gemm.multiply(m: coutG, n: width, k: kdim, a: wg, lda: kdim,
                                                      b: xg + y0 * ow, ldb: plane, c: yg + y0 * ow, ldc: plane)
                                    } else {
                                        guard let cbase = columnBase else { continue }
                                        let col = cbase + lane * laneFloats
                                        Im2col.unfold(input: xg, channels: cinG, height: h, width: w, geometry: g,
                                                      outputHeight: oh, outputWidth: ow, rows: y0 ..< y1, threaded: false, into: col)
                                        Gemm.multiply(m: coutG, n: width, k: kdim, a: wg, lda: kdim,
                                                      b: col, ldb: width, c: yg + y0 * ow, ldc: plane)
                                    }
                                    finishBand(yg + y0 * ow, channels: coutG, width: width, stride: plane,
                                               bias: bias.map { b in { b[grp * coutG + $0] } }, relu: relu)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds the bias and applies ReLU to `channels` rows of `width` floats spaced `stride` apart.
    static func finishBand(_ y: UnsafeMutablePointer<Float>, channels: Int, width: Int, stride: Int,
                           bias: ((Int) -> Float)?, relu: Bool) {
        if bias == nil && !relu { return }
        for o in 0 ..< channels {
            let row = y + o * stride
            let beta = bias?(o) ?? 0
            if relu {
                for i in 0 ..< width { row[i] = max(row[i] + beta, 0) }
            } else {
                for i in 0 ..< width { row[i] += beta }
            }
        }
    }

    /// The convolution with `imagesPerGEMM` images unfolded side by side per GEMM; the product
    /// `[C_out/g, images·plane]` is then scattered to each image's NCHW planes.
    static func forwardImageBatched(
        _ input: DenseTensor, weight: DenseTensor, output out: inout [Float], geometry g: Conv2dGeometry,
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
                                    Gemm.multiply(m: coutG, n: width, k: kdim, a: wt + grp * coutG * kdim, lda: kdim,
                                                  b: col, ldb: width, c: prod, ldc: width)
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

    /// Floats of im2col columns unfolded at once (4 MiB): large enough for efficient GEMMs,
    /// small enough to stay in the last-level cache instead of streaming 100 MB for VGG's first layers.
    static let columnBudget = 1 << 20

    /// Adds `bias[c]` to every element of channel `c` and applies `epilogue`, in one pass.
    static func applyBiasAndEpilogue(_ values: inout [Float], bias: [Float]?, channels: Int, plane: Int, epilogue: Epilogue) {
        if bias == nil, case .none = epilogue { return }
        let planes = plane == 0 ? 0 : values.count / plane
        let relu: Bool
        switch epilogue {
        case .none: relu = false
        case .relu: relu = true
        }
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
