internal import CkptAVX512

// N images, C channels, H rows, W columns (NCHW).

/// Where `Convolution.forwardShifted` copies the input so that every row of the im2col matrix is
/// the copy read at one offset: zero-padded planes laid out `[C_in, phases, N, H_p, W_p]`.
///
/// With stride `s`, tap `i` of a kernel row reads input row `s·y + i·d − p`, which is row
/// `y + ⌊(i·d − p)/s⌋` of the input's phase `(i·d − p) mod s` (every `s`-th row, starting there):
/// each tap reads one phase plane shifted by a whole number of its rows, so the strided
/// convolution becomes a stride-1 one over the phases (a polyphase split). Only the phases some
/// tap reads are copied (one for a 1×1 stride-2 kernel, four for 3×3 stride 2). With stride 1
/// there is one phase, the input itself: each row its `p` zeros then its `W` values (a row's
/// right padding is the next row's left), `p` zero rows above and below.
///
/// Numbering the product's columns by position in a phase plane (`img·H_p·W_p + y·W_p + x` for
/// output pixel `(y, x)`), row `(c, i, j)` of the im2col matrix starts at `offset(c, i, j)`;
/// columns that fall in the padding are computed and dropped.
struct ShiftedLayout {
    /// One axis of the planes: which phases the taps read, and where each tap reads.
    struct Axis {
        /// The input phases (index mod stride) some tap reads, ascending.
        let phases: [Int]
        /// Zeros before each line's values, and the values (the longest phase's count) after them.
        let lead: Int, span: Int
        /// Tap `i` reads phase `phases[tapPhase[i]]` shifted by `tapShift[i]` (in phase units).
        let tapPhase: [Int], tapShift: [Int]
        /// The input's extent and stride along the axis.
        let extent: Int, stride: Int

        init(input n: Int, output o: Int, kernel k: Int, stride s: Int, padding p: Int, dilation d: Int) {
            var phaseOf = [Int](), shifts = [Int]()
            for i in 0 ..< k {
                let u = i * d - p
                let a = (u % s + s) % s
                phaseOf.append(a)
                shifts.append((u - a) / s)
            }
            let phases = Array(Set(phaseOf)).sorted()
            self.phases = phases
            tapPhase = phaseOf.map { a in phases.firstIndex(of: a) ?? 0 }
            tapShift = shifts
            lead = max(0, -(shifts.min() ?? 0))
            span = (n + s - 1) / s
            extent = n
            stride = s
            maxReach = o + (shifts.max() ?? 0)
        }

        /// One past the last position (counted from the first value) that output `o − 1` reads.
        let maxReach: Int

        /// Values of phase `phase` along the axis (at most `span`).
        func count(phase: Int) -> Int { max(0, (extent - phase + stride - 1) / stride) }
    }

    let rows: Axis, columns: Axis
    /// Padded plane rows and columns (a line's right padding is the next line's lead), plane size.
    let hp: Int, wp: Int, paddedPlane: Int
    /// Floats between phases of a channel, and between channels.
    let phaseStride: Int, channelStride: Int
    /// Columns of the product (through the last image's last output pixel).
    let total: Int
    /// Output pixels of the batch.
    let outputPixels: Int

    /// The layout for `images` inputs of `height × width`, or nil when the geometry is pointwise
    /// (the plain GEMM reads it as it is), the padding reaches past the kernel, or the output is empty.
    init?(_ g: Conv2dGeometry, images n: Int, height h: Int, width w: Int) {
        guard !g.isPointwise, n >= 1,
              g.padding.height <= g.dilation.height * (g.kernelSize.height - 1),
              g.padding.width <= g.dilation.width * (g.kernelSize.width - 1),
              let (oh, ow) = try? g.convolutionOutputSize(height: h, width: w) else { return nil }
        rows = Axis(input: h, output: oh, kernel: g.kernelSize.height, stride: g.stride.height, padding: g.padding.height,
                    dilation: g.dilation.height)
        columns = Axis(input: w, output: ow, kernel: g.kernelSize.width, stride: g.stride.width, padding: g.padding.width,
                       dilation: g.dilation.width)
        hp = rows.lead + max(rows.span, rows.maxReach)
        wp = max(columns.lead + columns.span, columns.maxReach)
        paddedPlane = hp * wp
        phaseStride = n * paddedPlane
        channelStride = rows.phases.count * columns.phases.count * phaseStride
        total = (n - 1) * paddedPlane + (oh - 1) * wp + ow
        outputPixels = n * oh * ow
    }

    /// Floats of the copy: every channel's planes, then zeros for the 48-column panels of the last
    /// columns, which read up to 47 floats past them, shifted by up to a whole plane and a line's lead.
    func count(channels c: Int) -> Int { c * channelStride + 64 + columns.lead }

    /// Where row `(c, i, j)` of a group's im2col matrix starts in its channels' planes.
    func offset(channel c: Int, tap i: Int, _ j: Int) -> Int {
        let phase = rows.tapPhase[i] * columns.phases.count + columns.tapPhase[j]
        return c * channelStride + phase * phaseStride + (rows.lead + rows.tapShift[i]) * wp + columns.lead + columns.tapShift[j]
    }

    /// Every phase plane of channel plane `src` (`height × width`) of image `image`, zero-padded,
    /// into channel `dst`'s planes.
    func copy(_ src: UnsafePointer<Float>, image: Int, into dst: UnsafeMutablePointer<Float>) {
        let w = columns.extent
        for (pi, a) in rows.phases.enumerated() {
            for (pj, b) in columns.phases.enumerated() {
                let plane = dst + (pi * columns.phases.count + pj) * phaseStride + image * paddedPlane
                let lines = rows.count(phase: a), values = columns.count(phase: b)
                plane.initialize(repeating: 0, count: rows.lead * wp)
                for t in 0 ..< lines {
                    let line = plane + (rows.lead + t) * wp
                    let srow = src + (a + t * rows.stride) * w + b
                    line.initialize(repeating: 0, count: columns.lead)
                    if columns.stride == 1 {
                        (line + columns.lead).initialize(from: srow, count: values)
                    } else {
                        PanelUnfold.gather(srow, stride: columns.stride, count: values, available: w - b, into: line + columns.lead)
                    }
                    (line + columns.lead + values).initialize(repeating: 0, count: wp - columns.lead - values)
                }
                (plane + (rows.lead + lines) * wp).initialize(repeating: 0, count: (hp - rows.lead - lines) * wp)
            }
        }
    }
}

extension Convolution {
    /// True when `forward` takes a convolution on the microkernel through `forwardShifted` (the
    /// im2col matrix read in place from a zero-padded copy of the input, split into phases when
    /// strided: no unfold). Stride 1: when the columns it computes in the padding (`W_p·H_p` per
    /// plane rather than `W_out·H_out`, less the last image's bottom rows) add at most an eighth. A
    /// 56×56 plane with padding 1 adds 2 %, a single 7×7 one 12 %; 7×7 planes of a batch add 47 %
    /// and keep unfolding. Strided: only kernels larger than 1×1 (a 1×1 kernel's unfold is one
    /// strided copy, cheaper than the misaligned in-place reads) whose padding adds at most 4 %
    /// (a strided unfold costs less beside its product than a stride-1 one): ResNet's stem
    /// and layer2.0's 3×3 at batch 1 (2 and 4 %) read in place (measured 7–9 and 10–22 % faster), its
    /// 14×14 and 7×7 stride-2 outputs (7 and 12 %) and batches of 8 (4–7 %) unfold. The padding may
    /// not reach past the kernel (`p ≤ d·(k − 1)`, always so for PyTorch's "same" convolutions and
    /// ResNet's strided ones).
    package static func readsPaddedInput(_ g: Conv2dGeometry, images: Int, height: Int, width: Int) -> Bool {
        guard let layout = ShiftedLayout(g, images: images, height: height, width: width) else { return false }
        if g.stride == (1, 1) { return 8 * layout.total <= 9 * layout.outputPixels }
        return g.kernelSize != (1, 1) && 25 * layout.total <= 26 * layout.outputPixels
    }

    /// A convolution as an implicit GEMM with no unfold: the input is copied once into the
    /// zero-padded phase planes of `ShiftedLayout`, whose row `(c, i, j)` of the im2col matrix the
    /// microkernel reads in place. Jobs, bias, residual and ReLU as in `forwardPanels`. Each
    /// output is the same chain of multiply-adds as on the unfolded panels, bit for bit.
    static func forwardShifted(
        _ input: DenseTensor, packed: PackedWeights, bias: [Float]?, output out: inout [Float], geometry g: Conv2dGeometry,
        outputSize: (Int, Int), relu: Bool, residual: UnsafePointer<Float>? = nil
    ) {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        guard let layout = ShiftedLayout(g, images: n, height: h, width: w) else { return }
        let (oh, ow) = outputSize
        let (kh, kw) = (g.kernelSize.height, g.kernelSize.width)
        let groups = g.groups
        let cinG = c / groups, coutG = g.outputChannels / groups
        let plane = oh * ow
        let (wp, paddedPlane, channelStride) = (layout.wp, layout.paddedPlane, layout.channelStride)
        let count = layout.count(channels: c)
        let schedule = PanelSchedule(pixels: layout.total, depth: packed.columns, rows: coutG, groups: groups)
        let chunk = schedule.chunk
        // row (ch, i, j) of a group's im2col matrix starts this far into the group's padded planes
        var offsets = [Int](repeating: 0, count: packed.columns)
        for r in offsets.indices {
            offsets[r] = layout.offset(channel: r / (kh * kw), tap: (r / kw) % kh, r % kw)
        }
        withUnsafeTemporaryAllocation(byteCount: count * 4, alignment: 64) { raw in
            guard let padded = raw.baseAddress?.bindMemory(to: Float.self, capacity: count) else { return }
            input.values.withUnsafeBufferPointer { xb in
                out.withUnsafeMutableBufferPointer { yb in
                    offsets.withUnsafeBufferPointer { ob in
                        guard let x = xb.baseAddress, let y = yb.baseAddress, let offs = ob.baseAddress else { return }
                        let box = UncheckedSendable((x, y, padded, offs, residual))
                        (padded + c * channelStride).initialize(repeating: 0, count: count - c * channelStride)
                        parallelFor(c * n, minimumWork: n * c * h * w >= 1 << 16 ? 2 : Int.max) { index in
                            let (x, _, padded, _, _) = box.value
                            let ch = index / n, img = index % n
                            layout.copy(x + (img * c + ch) * h * w, image: img, into: padded + ch * channelStride)
                        }
                        schedule.run { job, _, product in
                            let (_, y, padded, offs, residual) = box.value
                            let grp = job.group, i0 = job.pixels.lowerBound, i1 = job.pixels.upperBound
                            let (p0, p1) = (job.rowPanels.lowerBound, job.rowPanels.upperBound)
                            Microkernel.multiply(packed, group: grp, shifted: padded + grp * cinG * channelStride + i0,
                                                 rowOffsets: offs, n: i1 - i0, c: product, ldc: chunk, rowPanels: job.rowPanels)
                            // the columns inside the output, one output row at a time
                            var i = i0
                            while i < i1 {
                                let img = i / paddedPlane, q = i % paddedPlane
                                let oy = q / wp, ox = q % wp
                                if oy >= oh {
                                    i = (img + 1) * paddedPlane
                                    continue
                                }
                                if ox >= ow {
                                    i += wp - ox
                                    continue
                                }
                                let run = min(ow - ox, i1 - i)
                                let offset = (img * g.outputChannels + grp * coutG) * plane + oy * ow + ox
                                storeRun(product + (i - i0), chunk: chunk, rows: min(coutG, p0 * 8) ..< min(coutG, p1 * 8),
                                         to: y + offset, plane: plane, count: run, bias: bias, biasOffset: grp * coutG,
                                         relu: relu, residual: residual.map { $0 + offset })
                                i += run
                            }
                        }
                    }
                }
            }
        }
    }
}
