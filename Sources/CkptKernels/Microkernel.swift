internal import CkptAVX512
#if canImport(Glibc)
import Glibc
#endif

/// A weight matrix (one per group of a grouped convolution) packed once for the AVX-512 GEMM
/// kernel, so a forward pass packs only its activations.
public struct PackedWeights: @unchecked Sendable {
    let matrices: [PackedMatrix]
    /// Rows of each group's matrix (`C_out/groups`).
    public let rows: Int
    /// Columns of each group's matrix (`C_in/groups·kH·kW`).
    public let columns: Int
}

/// Our own single-precision GEMM kernel (8×48 tiles in AVX-512 registers, `CkptAVX512`), used
/// instead of OpenBLAS where one operand is a weight matrix packed ahead of time: convolutions
/// and the Winograd products, whose short, thin GEMMs spend more in OpenBLAS's packing than in
/// its arithmetic. Only on CPUs that report AVX-512F; everything else stays on OpenBLAS.
public enum Microkernel {
    /// True when this CPU can run the kernel (`avx512f` in `/proc/cpuinfo`'s flags).
    public static let isSupported: Bool = CPUFeatures.flags.contains("avx512f")

    /// False to route every product through OpenBLAS (tests compare the two paths); written only
    /// between forward passes.
    nonisolated(unsafe) public static var isEnabled = isSupported

    /// `groups` consecutive `rows × columns` matrices (row-major, as a convolution weight
    /// `[C_out, C_in/groups, kH, kW]` lies in memory) packed for `multiply`, or nil when the kernel is
    /// not in use.
    public static func pack(_ values: [Float], groups: Int = 1, rows: Int, columns: Int) -> PackedWeights? {
        guard isEnabled, groups >= 1, values.count >= groups * rows * columns else { return nil }
        return values.withUnsafeBufferPointer { vb -> PackedWeights? in
            guard let v = vb.baseAddress else { return nil }
            return pack(v, groups: groups, rows: rows, columns: columns)
        }
    }

    /// `pack` from a pointer to `groups · rows · columns` floats.
    static func pack(_ v: UnsafePointer<Float>, groups: Int, rows: Int, columns: Int) -> PackedWeights? {
        guard isEnabled else { return nil }
        let matrices = (0 ..< groups).map { g in
            PackedMatrix(v + g * rows * columns, rows: rows, columns: columns, rowStride: columns)
        }
        return PackedWeights(matrices: matrices, rows: rows, columns: columns)
    }

    /// `C = W[group] · B` for `B` (`columns × n`, row stride `ldb`) into `C` (`rows × n`, row stride
    /// `ldc`), on the calling thread.
    static func multiply(_ w: PackedWeights, group: Int = 0, b: UnsafePointer<Float>, ldb: Int, n: Int,
                         c: UnsafeMutablePointer<Float>, ldc: Int) {
        PackedGemm.multiply(w.matrices[group], b: b, ldb: ldb, columns: n, c: c, ldc: ldc)
    }

    /// Columns per panel of a `B` laid out for `multiply(_:group:panels:n:c:ldc:)`.
    static let panelWidth = PackedGemm.panelWidth

    /// Floats of `B` (`depth × n`) laid out as panels: `n` rounded up to whole panels.
    static func panelFloats(depth: Int, n: Int) -> Int { (n + panelWidth - 1) / panelWidth * panelWidth * depth }

    /// `C = W[group] · B` for `B` laid out as panels (element `(k, j)` at
    /// `(j / 48)·depth·48 + k·48 + j % 48`, each panel 64-byte aligned), on the calling thread.
    /// `rowPanels` limits the product to those 8-row panels of `W` and `C`.
    static func multiply(_ w: PackedWeights, group: Int = 0, panels b: UnsafePointer<Float>, n: Int,
                         c: UnsafeMutablePointer<Float>, ldc: Int, rowPanels: Range<Int>? = nil) {
        PackedGemm.multiply(w.matrices[group], panelsOfB: b, columns: n, c: c, ldc: ldc, panels: rowPanels)
    }

    /// `C = W[group] · B` for `B` read in place, row `kk` at `b + rowOffsets[kk]` with `n` rounded up
    /// to 48 floats readable (`PackedGemm.multiply(_:shiftedB:…)`), on the calling thread;
    /// `rowPanels` as in `multiply(_:group:panels:…)`.
    static func multiply(_ w: PackedWeights, group: Int = 0, shifted b: UnsafePointer<Float>, rowOffsets: UnsafePointer<Int>,
                         n: Int, c: UnsafeMutablePointer<Float>, ldc: Int, rowPanels: Range<Int>? = nil) {
        PackedGemm.multiply(w.matrices[group], shiftedB: b, rowOffsets: rowOffsets, columns: n, c: c, ldc: ldc, panels: rowPanels)
    }

    /// `C = A·B` for an unpacked `A` read transposed (element `(i, kk)` at `a[kk·lda + i]`, `rows × depth`)
    /// and `B` laid out as panels, on the calling thread; `rowPanels` as in `multiply(_:group:panels:…)`.
    static func multiply(transposedA a: UnsafePointer<Float>, lda: Int, rows: Int, depth: Int, panels b: UnsafePointer<Float>,
                         n: Int, c: UnsafeMutablePointer<Float>, ldc: Int, rowPanels: Range<Int>? = nil) {
        PackedGemm.multiply(transposedA: a, lda: lda, rows: rows, depth: depth, panelsOfB: b, columns: n, c: c, ldc: ldc,
                            panels: rowPanels)
    }

    /// Winograd F(4×4, 3×3)'s input transform of one channel of a band, in panel layout (`WinogradInput4x4`).
    static func winograd4x4Input(_ x: UnsafePointer<Float>, channels: Int, height: Int, width: Int, padding: (Int, Int),
                                 tilesH: Int, tilesW: Int, rows: Range<Int>, channel: Int,
                                 into v: UnsafeMutablePointer<Float>, xiStride: Int) {
        WinogradInput4x4.transform(input: x, channels: channels, height: height, width: width, padTop: padding.0,
                                   padLeft: padding.1, tilesH: tilesH, tilesW: tilesW, rows: rows, channel: channel,
                                   into: v, xiStride: xiStride)
    }

    /// The im2col matrix of output pixels `pixels` (numbered through the batch) in panel layout
    /// (`PanelUnfold`): what `multiply(_:group:panels:n:c:ldc:rowPanels:)` takes as `B`.
    static func unfold(_ x: UnsafePointer<Float>, imageStride: Int, channels: Int, height: Int, width: Int,
                       geometry g: Conv2dGeometry, outputHeight: Int, outputWidth: Int, pixels: Range<Int>,
                       into panels: UnsafeMutablePointer<Float>) {
        PanelUnfold.unfold(input: x, imageStride: imageStride, channels: channels, height: height, width: width,
                           kernel: (g.kernelSize.height, g.kernelSize.width), stride: (g.stride.height, g.stride.width),
                           padding: (g.padding.height, g.padding.width), dilation: (g.dilation.height, g.dilation.width),
                           outputHeight: outputHeight, outputWidth: outputWidth, pixels: pixels, into: panels)
    }

    /// Rows `matrixRows` of the im2col matrix of output pixels `pixels`, transposed into 48-column
    /// panels (`TransposedPanels.unfold`): the `B` of `multiplyAdd(panelsOfA:…)` for a weight gradient.
    static func unfoldTransposed(_ x: UnsafePointer<Float>, imageStride: Int, channels: Int, height: Int, width: Int,
                                 geometry g: Conv2dGeometry, outputHeight: Int, outputWidth: Int, pixels: Range<Int>,
                                 matrixRows: Range<Int>, into panels: UnsafeMutablePointer<Float>) {
        if hasSamePlaneUnfold(g, height: height, width: width, outputHeight: outputHeight, outputWidth: outputWidth)
            && pixels.lowerBound % 16 == 0 && pixels.count % 16 == 0 {
            TransposedPanels.unfoldSamePlane(input: x, imageStride: imageStride, height: height, width: width,
                                             kernel: (g.kernelSize.height, g.kernelSize.width),
                                             padding: (g.padding.height, g.padding.width), pixels: pixels,
                                             matrixRows: matrixRows, into: panels)
            return
        }
        TransposedPanels.unfold(input: x, imageStride: imageStride, channels: channels, height: height, width: width,
                                kernel: (g.kernelSize.height, g.kernelSize.width), stride: (g.stride.height, g.stride.width),
                                padding: (g.padding.height, g.padding.width), dilation: (g.dilation.height, g.dilation.width),
                                outputHeight: outputHeight, outputWidth: outputWidth, pixels: pixels, matrixRows: matrixRows,
                                into: panels)
    }

    /// True when `unfoldTransposed` takes its shifted-plane path for pixel ranges on multiples of 16:
    /// stride 1, no dilation, planes that keep their size and hold a multiple of 16 pixels.
    static func hasSamePlaneUnfold(_ g: Conv2dGeometry, height: Int, width: Int, outputHeight: Int, outputWidth: Int) -> Bool {
        g.stride == (1, 1) && g.dilation == (1, 1) && outputHeight == height && outputWidth == width && (height * width) % 16 == 0
    }

    /// Columns `column ..< column + count` of an `m`-row `A` (row stride `rowStride`) into the 8-row
    /// panels of a matrix `depth` columns deep (`TransposedPanels.packRows`).
    static func packRows(_ a: UnsafePointer<Float>, rowStride: Int, rows m: Int, count: Int, column: Int, depth: Int,
                         into panels: UnsafeMutablePointer<Float>) {
        TransposedPanels.packRows(a, rowStride: rowStride, rows: m, count: count, column: column, depth: depth, into: panels)
    }

    /// `C[m × n] += A · B` for `A` packed by `packRows` and `B` by `unfoldTransposed`, on the calling thread.
    static func multiplyAdd(panelsOfA a: UnsafePointer<Float>, rows m: Int, depth: Int, panelsOfB b: UnsafePointer<Float>,
                            columns n: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        PackedGemm.multiplyAdd(panelsOfA: a, rows: m, depth: depth, panelsOfB: b, columns: n, c: c, ldc: ldc)
    }

    /// Winograd F(4×4, 3×3)'s output transform of one output channel of a band (`WinogradOutput4x4`),
    /// with the residual (laid out as `y`) added before the ReLU when given.
    static func winograd4x4Output(_ m: UnsafePointer<Float>, outputChannels: Int, tiles: Int, channel: Int, rows: Range<Int>,
                                  tilesH: Int, tilesW: Int, outputHeight: Int, outputWidth: Int, bias: Float, relu: Bool,
                                  into y: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>? = nil) {
        WinogradOutput4x4.transform(m: m, outputChannels: outputChannels, tiles: tiles, channel: channel, rows: rows,
                                    tilesH: tilesH, tilesW: tilesW, outputHeight: outputHeight, outputWidth: outputWidth,
                                    bias: bias, relu: relu, into: y, residual: residual)
    }

    /// `multiply` split over the cores (unless the caller already runs one product per core):
    /// by 8-row panels of `A` when there are enough and `A` has more rows than `B` columns, else
    /// by columns of `B` in whole 48-column panels.
    static func multiplyThreaded(_ w: PackedWeights, group: Int = 0, b: UnsafePointer<Float>, ldb: Int, n: Int,
                                 c: UnsafeMutablePointer<Float>, ldc: Int) {
        let workers = Gemm.splitsWork ? Gemm.threadCount : 1
        let matrix = w.matrices[group]
        let panels = (w.rows + 7) / 8
        if workers == 1 || w.rows * n * w.columns < 1 << 20 {
            PackedGemm.multiply(matrix, b: b, ldb: ldb, columns: n, c: c, ldc: ldc)
            return
        }
        let box = UncheckedSendable((b, c))
        // split the larger operand when both split well: the weight's rows for small planes (a
        // 14×14 plane's 196 columns would split 144 + 52), else the columns, on the whole panels
        // nearest to equal shares (784 columns: 384 + 400)
        if panels < 2 * workers || (n >= 48 * 2 * workers && w.rows < n) {
            parallelFor(workers) { lane in
                let (b, c) = box.value
                func boundary(_ lane: Int) -> Int { lane == workers ? n : min(n, (lane * n / workers + 24) / 48 * 48) }
                let start = boundary(lane), end = boundary(lane + 1)
                if end > start {
                    PackedGemm.multiply(matrix, b: b + start, ldb: ldb, columns: end - start, c: c + start, ldc: ldc)
                }
            }
        } else {
            parallelRanges(panels, lanes: workers) { rowPanels in
                let (b, c) = box.value
                PackedGemm.multiply(matrix, b: b, ldb: ldb, columns: n, c: c, ldc: ldc, panels: rowPanels)
            }
        }
    }
}
