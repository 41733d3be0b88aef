// N images, C channels, H rows, W columns (NCHW); weights are [C_out, C_in/groups, kH, kW].

/// Which gradients a backward pass must produce: nothing is computed that nobody needs (a frozen
/// weight gets no `dWeight`, the first trainable layer computes no `dInput`).
public struct GradientNeeds: Sendable, Equatable {
    /// The gradient with respect to the layer's input.
    public var input: Bool
    /// The gradient with respect to the weight.
    public var weight: Bool
    /// The gradient with respect to the bias.
    public var bias: Bool

    /// The needs named.
    public init(input: Bool, weight: Bool, bias: Bool) {
        self.input = input
        self.weight = weight
        self.bias = bias
    }

    /// Every gradient.
    public static let all = GradientNeeds(input: true, weight: true, bias: true)
}

/// The gradients of one convolution or linear call; nil where not asked for.
public struct LayerGradients: Sendable {
    /// `dInput`, shaped as the input.
    public var dInput: DenseTensor?
    /// `dWeight`, shaped as the weight.
    public var dWeight: DenseTensor?
    /// `dBias`, `[C_out]`.
    public var dBias: DenseTensor?
}

extension Convolution {
    /// The gradients of `y = conv2d(x, weight, bias)` given `dOutput = ∂L/∂y`.
    ///
    /// Mirrors `forward`: it needs the forward's input (for `dWeight`) and the weight (for
    /// `dInput`). Per image and group, over bands of output rows whose column matrix stays in
    /// cache: `dWeight += dY · unfold(x)ᵀ` and `dInput += fold(Wᵀ · dY)`; 1×1 stride-1 layers skip
    /// the unfold. Images are dealt to the cores, each with its own `dWeight`, summed at the end.
    /// Stride-1 layers get `dInput` as the forward convolution of `dY` with the flipped,
    /// transposed weight, on the forward's fast paths.
    /// PyTorch counterpart: `torch.ops.aten.convolution_backward`.
    /// - Throws: `KernelError` when a shape does not fit the geometry.
    public static func backward(
        _ dOutput: DenseTensor, input: DenseTensor, weight: DenseTensor, geometry g: Conv2dGeometry,
        needs: GradientNeeds
    ) throws -> LayerGradients {
        let op = "conv2d backward"
        let (n, c, h, w) = try g.checkOperands(op, input: input, weight: weight, bias: nil, transposed: false)
        let (oh, ow) = try g.convolutionOutputSize(height: h, width: w)
        guard dOutput.shape == [n, g.outputChannels, oh, ow] else {
            throw KernelError.shapeMismatch(operation: op, operand: "output gradient",
                                            expected: "\([n, g.outputChannels, oh, ow])", got: dOutput.shape)
        }
        var result = LayerGradients()
        if needs.bias { result.dBias = channelSums(dOutput) }
        let flippedInput = needs.input && g.stride == (1, 1) && g.dilation == (1, 1) && !g.isPointwise
            && g.padding.height < g.kernelSize.height && g.padding.width < g.kernelSize.width
        // strided layers: one stride-1 convolution of dY per phase of the input grid
        let phasedInput = needs.input && !flippedInput && g.dilation == (1, 1) && g.stride != (1, 1) && Microkernel.isEnabled
        if flippedInput {
            result.dInput = try inputGradientByConvolution(dOutput, weight: weight, geometry: g, height: h, width: w)
        } else if phasedInput {
            result.dInput = try inputGradientByPhases(dOutput, weight: weight, geometry: g, height: h, width: w)
        }
        // the weight gradient on the microkernel, in chunks of pixels that span images when planes are small
        let packedWeight = needs.weight && Microkernel.isEnabled
        if packedWeight {
            result.dWeight = weightGradientPacked(dOutput, input: input, geometry: g, sizes: (n, c, h, w), outputSize: (oh, ow))
        }
        let unfoldNeeds = GradientNeeds(input: needs.input && !flippedInput && !phasedInput, weight: needs.weight && !packedWeight, bias: false)
        if unfoldNeeds.input || unfoldNeeds.weight {
            let (dX, dW) = unfoldedBackward(dOutput, input: input, weight: weight, geometry: g, needs: unfoldNeeds,
                                            sizes: (n, c, h, w), outputSize: (oh, ow))
            if unfoldNeeds.input { result.dInput = dX }
            if unfoldNeeds.weight { result.dWeight = dW }
        }
        return result
    }

    /// `Σ` over images and pixels of each channel of an NCHW gradient (a bias gradient): each plane
    /// summed in Float across 32 lanes (four 8-wide accumulators, then pairwise), the planes of a
    /// channel in Double, the channels dealt to the cores. A single running Float sum per plane was
    /// a chain of dependent adds (four cycles each: ~1 % of a VGG step on one core).
    static func channelSums(_ t: DenseTensor) -> DenseTensor {
        typealias V = SIMD8<Float>
        let n = t.shape[0], c = t.shape[1]
        let plane = t.shape.dropFirst(2).reduce(1, *)
        var sums = [Float](repeating: 0, count: c)
        t.values.withUnsafeBufferPointer { v in
            sums.withUnsafeMutableBufferPointer { sb in
                guard let base = v.baseAddress, let out = sb.baseAddress, v.count >= n * c * plane else { return }
                let box = UncheckedSendable((base, out))
                parallelRanges(c, lanes: n * c * plane >= 1 << 16 ? Gemm.threadCount : 1) { channels in
                    let (base, out) = box.value
                    for ch in channels {
                        var total: Double = 0
                        for img in 0 ..< n {
                            let row = UnsafeRawPointer(base + (img * c + ch) * plane)
                            var acc = (V(), V(), V(), V())
                            var i = 0
                            while i + 32 <= plane {
                                acc.0 += row.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
                                acc.1 += row.loadUnaligned(fromByteOffset: 4 * i + 32, as: V.self)
                                acc.2 += row.loadUnaligned(fromByteOffset: 4 * i + 64, as: V.self)
                                acc.3 += row.loadUnaligned(fromByteOffset: 4 * i + 96, as: V.self)
                                i += 32
                            }
                            var s = ((acc.0 + acc.1) + (acc.2 + acc.3)).sum()
                            let values = base + (img * c + ch) * plane
                            while i < plane {
                                s += values[i]
                                i += 1
                            }
                            total += Double(s)
                        }
                        out[ch] = Float(total)
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [c], values: sums)
    }

    /// `dInput` of a stride-1 convolution: `conv2d(dY, W')` with `W'[ci, co, i, j] = W[co, ci, kH−1−i, kW−1−j]`
    /// per group and padding `k − 1 − p`, so it runs on the forward's packed and Winograd paths.
    static func inputGradientByConvolution(_ dOutput: DenseTensor, weight: DenseTensor, geometry g: Conv2dGeometry,
                                           height h: Int, width w: Int) throws -> DenseTensor {
        let (kh, kw) = (g.kernelSize.height, g.kernelSize.width)
        let transposed = Conv2dGeometry(
            inputChannels: g.outputChannels, outputChannels: g.inputChannels, kernelSize: g.kernelSize,
            stride: (1, 1), padding: (kh - 1 - g.padding.height, kw - 1 - g.padding.width), dilation: (1, 1), groups: g.groups)
        var y: DenseTensor
        if Winograd4x4.paysForInputGradientTransform(transposed, images: dOutput.shape[0], height: dOutput.shape[2], width: dOutput.shape[3]) {
            // W' transformed straight from W
            y = try Winograd4x4.forward(dOutput, weights: try Winograd4x4.trainingTransform(flipping: weight), bias: nil,
                                        geometry: transposed, epilogue: .none)
        } else {
            let weightT = flippedTransposed(weight, groups: g.groups)
            y = try forward(dOutput, weight: weightT, bias: nil, geometry: transposed,
                            packed: packForTraining(weight: weightT, geometry: transposed))
        }
        // an input row or column the forward never reached (floor in the output size) gets zero
        if y.shape[2] != h || y.shape[3] != w {
            y = cropOrPad(y, height: h, width: w)
        }
        return y
    }

    /// `W'[ci, co, i, j] = W[co, ci, kH − 1 − i, kW − 1 − j]` per group: the weight of a stride-1
    /// convolution's input gradient as a convolution (`[C_in, C_out/groups, kH, kW]`).
    static func flippedTransposed(_ weight: DenseTensor, groups: Int) -> DenseTensor {
        let (cout, cinG, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        let coutG = cout / groups
        var flipped = [Float].uninitialized(weight.count)
        weight.values.withUnsafeBufferPointer { src in
            flipped.withUnsafeMutableBufferPointer { dst in
                for grp in 0 ..< groups {
                    for co in 0 ..< coutG {
                        for ci in 0 ..< cinG {
                            let s = ((grp * coutG + co) * cinG + ci) * kh * kw
                            let d = ((grp * cinG + ci) * coutG + co) * kh * kw
                            for k in 0 ..< kh * kw { dst[d + k] = src[s + kh * kw - 1 - k] }
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [groups * cinG, coutG, kh, kw], values: flipped)
    }

    /// `dInput` of a strided, undilated convolution as one stride-1 convolution of `dY` per phase
    /// `(a, b)` of the input grid (the rows `y` with `(y + p_h) mod s_h = a`, the columns likewise):
    /// only the taps `i = a + s_h·t` reach such a row, from output row `(y + p_h − a)/s_h − t`, so the
    /// phase is `conv2d(dY, W_ab, padding k_ab − 1)` with `W_ab[ci, co, t, u] =
    /// W[co, ci, a + s_h·(k_a − 1 − t), b + s_w·(k_b − 1 − u)]` per group, on the forward's fast
    /// paths, its output scattered onto the phase's rows and columns (a phase no tap reaches stays 0).
    static func inputGradientByPhases(_ dOutput: DenseTensor, weight: DenseTensor, geometry g: Conv2dGeometry,
                                      height h: Int, width w: Int) throws -> DenseTensor {
        let groups = g.groups
        let cinG = g.inputChannels / groups, coutG = g.outputChannels / groups
        let (kh, kw) = (g.kernelSize.height, g.kernelSize.width)
        let (sh, sw) = (g.stride.height, g.stride.width)
        let (ph, pw) = (g.padding.height, g.padding.width)
        let n = dOutput.shape[0], oh = dOutput.shape[2], ow = dOutput.shape[3]
        let c = g.inputChannels
        var dx = [Float](repeating: 0, count: n * c * h * w)
        for a in 0 ..< sh {
            for b in 0 ..< sw {
                // taps per phase; rows of the phase: y = s_h·Y − p_h + a for Y from ⌈(p_h − a)/s_h⌉
                let ka = (kh - a + sh - 1) / sh, kb = (kw - b + sw - 1) / sw
                guard ka > 0, kb > 0 else { continue }
                var sub = [Float].uninitialized(g.inputChannels * coutG * ka * kb)
                weight.values.withUnsafeBufferPointer { src in
                    for grp in 0 ..< groups {
                        for co in 0 ..< coutG {
                            for ci in 0 ..< cinG {
                                let s = ((grp * coutG + co) * cinG + ci) * kh * kw
                                let d = ((grp * cinG + ci) * coutG + co) * ka * kb
                                for t in 0 ..< ka {
                                    for u in 0 ..< kb {
                                        sub[d + t * kb + u] = src[s + (a + sh * (ka - 1 - t)) * kw + b + sw * (kb - 1 - u)]
                                    }
                                }
                            }
                        }
                    }
                }
                let phase = Conv2dGeometry(
                    inputChannels: g.outputChannels, outputChannels: c, kernelSize: (ka, kb),
                    stride: (1, 1), padding: (ka - 1, kb - 1), dilation: (1, 1), groups: groups)
                let subWeight = DenseTensor(uncheckedShape: phase.convolutionWeightShape, values: sub)
                let y = try forward(dOutput, weight: subWeight, bias: nil, geometry: phase,
                                    packed: packForTraining(weight: subWeight, geometry: phase))
                let (yh, yw) = (oh + ka - 1, ow + kb - 1)
                // the phase's first row and column in the input, and their index in y
                let row0 = (ph - a + sh - 1) / sh, col0 = (pw - b + sw - 1) / sw
                let lastRow = h - 1 + ph - a, lastCol = w - 1 + pw - b
                let rows = lastRow < 0 ? 0 : min(yh, lastRow / sh + 1) - row0
                let cols = lastCol < 0 ? 0 : min(yw, lastCol / sw + 1) - col0
                guard rows > 0, cols > 0 else { continue }
                y.values.withUnsafeBufferPointer { yb in
                    dx.withUnsafeMutableBufferPointer { db in
                        guard let yp = yb.baseAddress, let dp = db.baseAddress else { return }
                        let box = UncheckedSendable((yp, dp))
                        parallelFor(n * c, minimumWork: 4) { p in
                            let (yp, dp) = box.value
                            let src = yp + p * yh * yw, dst = dp + p * h * w
                            for r in 0 ..< rows {
                                let sr = src + (row0 + r) * yw + col0
                                let dr = dst + ((row0 + r) * sh - ph + a) * w + col0 * sw - pw + b
                                for q in 0 ..< cols { dr[q * sw] = sr[q] }
                            }
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [n, c, h, w], values: dx)
    }

    /// The top-left `h×w` of each plane, zero-extended where `y` is smaller.
    static func cropOrPad(_ y: DenseTensor, height h: Int, width w: Int) -> DenseTensor {
        let (n, c, yh, yw) = (y.shape[0], y.shape[1], y.shape[2], y.shape[3])
        var out = [Float](repeating: 0, count: n * c * h * w)
        for p in 0 ..< n * c {
            for r in 0 ..< min(h, yh) {
                for x in 0 ..< min(w, yw) { out[(p * h + r) * w + x] = y.values[(p * yh + r) * yw + x] }
            }
        }
        return DenseTensor(uncheckedShape: [n, c, h, w], values: out)
    }

    /// `dInput` and `dWeight` by unfolding: bands of output rows per image and group.
    static func unfoldedBackward(
        _ dOutput: DenseTensor, input: DenseTensor, weight: DenseTensor, geometry g: Conv2dGeometry, needs: GradientNeeds,
        sizes: (n: Int, c: Int, h: Int, w: Int), outputSize: (Int, Int)
    ) -> (DenseTensor, DenseTensor) {
        let (n, c, h, w) = sizes
        let (oh, ow) = outputSize
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let kdim = cinG * g.kernelSize.height * g.kernelSize.width
        let plane = oh * ow
        let pointwise = g.isPointwise
        let bandRows = max(1, min(oh, columnBudget / max(kdim * ow, 1)))
        let lanes = max(1, min(Gemm.threadCount, n))
        let bandFloats = pointwise ? 0 : (kdim * bandRows * ow + 15) / 16 * 16
        let weightCount = weight.count
        // Wᵀ·dY stays on OpenBLAS: on the microkernel (Wᵀ packed once) three SGD steps of resnet18
        // drifted from torch's float64 twin 50× more than torch's float32 does (issue 8 note)
        let packedTransposed: PackedWeights? = nil
        var dX = [Float](repeating: 0, count: needs.input ? n * c * h * w : 0)
        // one dWeight per lane, summed at the end
        var dWs = [Float](repeating: 0, count: needs.weight ? lanes * weightCount : 0)
        var scratch = [Float].uninitialized(max(16, lanes * bandFloats * 2))
        let laneJob: (Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>?,
                      UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>) -> Void = { lane, x, dy, wt, dx, dw, s in
            let col = s + lane * bandFloats * 2
            let dcol = col + bandFloats
            var img = lane
            while img < n {
                defer { img += lanes }
                for grp in 0 ..< groups {
                    let xg = x + (img * c + grp * cinG) * h * w
                    let dyg = dy + (img * g.outputChannels + grp * coutG) * plane
                    let wg = wt + grp * coutG * kdim
                    var y0 = 0
                    while y0 < oh {
                        let y1 = min(oh, y0 + bandRows)
                        let width = (y1 - y0) * ow
                        let dyBand = dyg + y0 * ow
                        if let dw {
                            let b: UnsafePointer<Float>
                            let ldb: Int
                            if pointwise {
                                b = xg + y0 * ow
                                ldb = plane
                            } else {
                                Im2col.unfold(input: xg, channels: cinG, height: h, width: w, geometry: g, outputHeight: oh,
                                              outputWidth: ow, rows: y0 ..< y1, threaded: lanes == 1, into: col)
                                b = UnsafePointer(col)
                                ldb = width
                            }
                            // dW_g[coutG × kdim] += dY_band[coutG × width] · colᵀ[width × kdim]
                            Gemm.multiply(transposeB: true, m: coutG, n: kdim, k: width, a: dyBand, lda: plane,
                                          b: b, ldb: ldb, beta: 1, c: dw + grp * coutG * kdim, ldc: kdim)
                        }
                        if let dx {
                            let dxg = dx + (img * c + grp * cinG) * h * w
                            if pointwise {
                                multiplyTransposedWeight(packedTransposed, group: grp, weight: wg, kdim: kdim, coutG: coutG,
                                                         dy: dyBand, ldb: plane, width: width, c: dxg + y0 * ow, ldc: plane)
                            } else {
                                // dcol[kdim × width] = W_gᵀ · dY_band, then scattered back onto the input
                                multiplyTransposedWeight(packedTransposed, group: grp, weight: wg, kdim: kdim, coutG: coutG,
                                                         dy: dyBand, ldb: plane, width: width, c: dcol, ldc: width)
                                Im2col.fold(columns: dcol, channels: cinG, height: h, width: w, geometry: g,
                                            columnHeight: oh, columnWidth: ow, rows: y0 ..< y1, threaded: lanes == 1, into: dxg)
                            }
                        }
                        y0 = y1
                    }
                }
            }
        }
        // a placeholder input (frozen weight: only its shape is read) has no values
        let inputValues = input.values.isEmpty ? [Float](repeating: 0, count: 1) : input.values
        inputValues.withUnsafeBufferPointer { xb in
            dOutput.values.withUnsafeBufferPointer { dyb in
                weight.values.withUnsafeBufferPointer { wb in
                    dX.withUnsafeMutableBufferPointer { dxb in
                      dWs.withUnsafeMutableBufferPointer { dwb in
                        scratch.withUnsafeMutableBufferPointer { sb in
                            guard let x = xb.baseAddress, let dy = dyb.baseAddress, let wt = wb.baseAddress,
                                  let s = sb.baseAddress else { return }
                            // an empty array's baseAddress is not nil (it points at the shared empty
                            // storage): what is not needed must be nil here, or it is written there
                            let dx = needs.input ? dxb.baseAddress : nil
                            let dwPointers: [UnsafeMutablePointer<Float>?] = (0 ..< lanes).map { l in
                                needs.weight ? dwb.baseAddress.map { $0 + l * weightCount } : nil
                            }
                            if lanes == 1 {
                                laneJob(0, x, dy, wt, dx, dwPointers[0], s)
                                return
                            }
                            let box = UncheckedSendable((x, dy, wt, dx, dwPointers, s))
                            Gemm.withThreadCount(1) {
                                parallelFor(lanes) { lane in
                                    let (x, dy, wt, dx, dws, s) = box.value
                                    laneJob(lane, x, dy, wt, dx, dws[lane], s)
                                }
                            }
                        }
                      }
                    }
                }
            }
        }
        var dW = [Float](repeating: 0, count: needs.weight ? weightCount : 0)
        dW.withUnsafeMutableBufferPointer { d in
            dWs.withUnsafeBufferPointer { s in
                guard needs.weight, let dp = d.baseAddress, let sp = s.baseAddress else { return }
                for l in 0 ..< lanes {
                    for i in 0 ..< weightCount { dp[i] += sp[l * weightCount + i] }
                }
            }
        }
        return (DenseTensor(uncheckedShape: needs.input ? input.shape : [0], values: dX),
                DenseTensor(uncheckedShape: needs.weight ? weight.shape : [0], values: dW))
    }

    /// `C[kdim × width] = W_gᵀ · dY` on the microkernel when `packed` (Wᵀ) is given, else on OpenBLAS.
    @inline(__always)
    static func multiplyTransposedWeight(_ packed: PackedWeights?, group: Int, weight wg: UnsafePointer<Float>, kdim: Int, coutG: Int,
                                         dy: UnsafePointer<Float>, ldb: Int, width: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if let packed {
            Microkernel.multiply(packed, group: group, b: dy, ldb: ldb, n: width, c: c, ldc: ldc)
        } else {
            Gemm.multiply(transposeA: true, m: kdim, n: width, k: coutG, a: wg, lda: kdim, b: dy, ldb: ldb, c: c, ldc: ldc)
        }
    }

    /// `dWeight` on the microkernel: `dW_g[C_out/g × kdim] += dY_g[C_out/g × P] · unfold(x)ᵀ[P × kdim]`
    /// over blocks of `P = 144` output pixels numbered through the batch (a block spans images when
    /// planes are small), with `dY` packed as the kernel's `A` (once per superchunk of pixels, up to
    /// 1 MiB packed) and the unfolded input made straight into transposed panels of `B`, one slice
    /// of at most 384 of its rows at a time (so the slice of `dW` stays in L2 while the superchunk's
    /// blocks run against it). The cores split `dW`'s columns (the rows of the unfold: no duplicated
    /// unfold, no reduction) when there are few pixels for the size of `dW`, else the pixels, each
    /// with its own `dW`. Groups of 16 input channels and more gather the unfold from a padded
    /// channels-last copy of the input, one 48-row panel at a time (`ChannelsLastUnfold`); narrower
    /// ones unfold by transposes (stride-1 layers that keep their planes' size by shifting whole planes).
    static func weightGradientPacked(_ dOutput: DenseTensor, input: DenseTensor, geometry g: Conv2dGeometry,
                                     sizes: (n: Int, c: Int, h: Int, w: Int), outputSize: (Int, Int)) -> DenseTensor {
        let (n, c, h, w) = sizes
        let (oh, ow) = outputSize
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let kdim = cinG * g.kernelSize.height * g.kernelSize.width
        let plane = oh * ow
        let total = n * plane
        let weightCount = g.outputChannels * kdim
        let depth = 144  // a 144 × 48 panel of B (27 KiB) stays in L1 while every panel of dY runs against it
        let sliceRows = 384  // B of one block: 144 × 384 floats (216 KiB)
        let paddedRows = (coutG + 15) / 16 * 16
        let superPixels = max(depth, (1 << 18) / paddedRows / depth * depth)
        let lanes = max(1, Gemm.threadCount)
        let units = (kdim + 15) / 16  // column splits in 16s: a 16-wide tile costs a third of a 48-wide one
        // by columns, every lane packs all of dY; by pixels, the lanes' dW are summed: the cheaper of the two
        let splitColumns = lanes > 1 && units >= lanes && total < 2 * kdim
        let blocks = (total + depth - 1) / depth
        let workers = splitColumns ? lanes : max(1, min(lanes, blocks))
        let aFloats = (paddedRows * min(superPixels, blocks * depth) + 15) / 16 * 16
        let bFloats = depth * min(sliceRows, (kdim + 47) / 48 * 48)
        let laneFloats = aFloats + bFloats
        var dW = [Float](repeating: 0, count: weightCount)
        // pixel split: lane 0 adds into dW, the others into their own partial sums
        var partials = [Float](repeating: 0, count: splitColumns ? 0 : (workers - 1) * weightCount)
        // the unfold gathered from a padded channels-last copy (dW's columns then run tap-major)
        let channelsLast = ChannelsLastUnfold.applies(g)
        var padded = [Float].uninitialized(channelsLast ? ChannelsLastUnfold.paddedCount(g, images: n, height: h, width: w) : 0)
        if channelsLast {
            input.values.withUnsafeBufferPointer { xb in
                padded.withUnsafeMutableBufferPointer { pb in
                    guard let x = xb.baseAddress, let p = pb.baseAddress else { return }
                    ChannelsLastUnfold.pad(x, geometry: g, images: n, height: h, width: w, into: p)
                }
            }
        }
        padded.withUnsafeBufferPointer { paddedBuffer in
        input.values.withUnsafeBufferPointer { xb in
            dOutput.values.withUnsafeBufferPointer { dyb in
                dW.withUnsafeMutableBufferPointer { dwb in
                  partials.withUnsafeMutableBufferPointer { pb in
                    withUnsafeTemporaryAllocation(byteCount: workers * laneFloats * 4, alignment: 64) { sb in
                        guard let x = xb.baseAddress, let dy = dyb.baseAddress, let dwMain = dwb.baseAddress,
                              let s = sb.baseAddress?.bindMemory(to: Float.self, capacity: workers * laneFloats) else { return }
                        let box = UncheckedSendable((x, dy, dwMain, pb.baseAddress, s, paddedBuffer.baseAddress))
                        parallelFor(workers) { lane in
                            let (x, dy, dwMain, partial, s, padded) = box.value
                            let aPanels = s + lane * laneFloats
                            let bPanels = aPanels + aFloats
                            let rows = splitColumns
                                ? min(kdim, lane * units / lanes * 16) ..< min(kdim, (lane + 1) * units / lanes * 16)
                                : 0 ..< kdim
                            let pixels = splitColumns
                                ? 0 ..< total
                                : min(total, lane * blocks / workers * depth) ..< min(total, (lane + 1) * blocks / workers * depth)
                            guard let dw = splitColumns || lane == 0 ? dwMain : partial.map({ $0 + (lane - 1) * weightCount }) else { return }
                            for grp in 0 ..< groups {
                                let dwg = dw + grp * coutG * kdim
                                var s0 = pixels.lowerBound
                                while s0 < pixels.upperBound {
                                    let s1 = min(pixels.upperBound, s0 + superPixels)
                                    // dY of pixels s0 ..< s1, block by block of `depth` pixels, run by run within one image
                                    var i = s0
                                    while i < s1 {
                                        let block = (i - s0) / depth
                                        let blockStart = s0 + block * depth
                                        let blockDepth = min(depth, s1 - blockStart)
                                        let img = i / plane, q = i % plane
                                        let count = min(plane - q, blockStart + blockDepth - i)
                                        Microkernel.packRows(dy + (img * g.outputChannels + grp * coutG) * plane + q, rowStride: plane,
                                                             rows: coutG, count: count, column: i - blockStart, depth: blockDepth,
                                                             into: aPanels + block * paddedRows * depth)
                                        i += count
                                    }
                                    var r0 = rows.lowerBound
                                    while r0 < rows.upperBound {
                                        let r1 = min(rows.upperBound, r0 + sliceRows)
                                        var p0 = s0
                                        while p0 < s1 {
                                            let p1 = min(s1, p0 + depth)
                                            let panelsOfA = aPanels + (p0 - s0) / depth * paddedRows * depth
                                            if channelsLast, let padded {
                                                // one 48-row panel gathered and multiplied at a time: it stays in L1
                                                var q0 = r0
                                                while q0 < r1 {
                                                    let q1 = min(r1, q0 + 48)
                                                    ChannelsLastUnfold.gather(padded, geometry: g, group: grp, height: h, width: w,
                                                                              outputHeight: oh, outputWidth: ow, pixels: p0 ..< p1,
                                                                              matrixRows: q0 ..< q1, into: bPanels)
                                                    Microkernel.multiplyAdd(panelsOfA: panelsOfA, rows: coutG, depth: p1 - p0,
                                                                            panelsOfB: bPanels, columns: q1 - q0, c: dwg + q0, ldc: kdim)
                                                    q0 = q1
                                                }
                                            } else {
                                                Microkernel.unfoldTransposed(x + grp * cinG * h * w, imageStride: c * h * w,
                                                                             channels: cinG, height: h, width: w, geometry: g,
                                                                             outputHeight: oh, outputWidth: ow, pixels: p0 ..< p1,
                                                                             matrixRows: r0 ..< r1, into: bPanels)
                                                Microkernel.multiplyAdd(panelsOfA: panelsOfA, rows: coutG, depth: p1 - p0,
                                                                        panelsOfB: bPanels, columns: r1 - r0, c: dwg + r0, ldc: kdim)
                                            }
                                            p0 = p1
                                        }
                                        r0 = r1
                                    }
                                    s0 = s1
                                }
                            }
                        }
                    }
                  }
                }
            }
        }
        }
        // tap-major columns back in the weight's order with the partial sums added in the same pass
        if channelsLast && g.kernelSize.height * g.kernelSize.width > 1 {
            return DenseTensor(uncheckedShape: g.convolutionWeightShape,
                               values: ChannelsLastUnfold.restoreColumnOrder(dW, adding: partials, geometry: g))
        }
        if !partials.isEmpty {
            dW.withUnsafeMutableBufferPointer { d in
                partials.withUnsafeBufferPointer { p in
                    guard let dp = d.baseAddress, let pp = p.baseAddress else { return }
                    let box = UncheckedSendable((dp, pp))
                    parallelRanges(weightCount, lanes: lanes, multiple: 16) { range in
                        let (dp, pp) = box.value
                        for l in 0 ..< workers - 1 {
                            for i in range { dp[i] += pp[l * weightCount + i] }
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: g.convolutionWeightShape, values: dW)
    }
}
