// The one file compiled for AVX-512 (Package.swift): an 8×48 single-precision GEMM microkernel
// and the packing around it. CkptKernels calls it only after checking that the CPU has AVX-512F.

/// A matrix `A` (`rows × columns`, the weights of a convolution: `C_out × C_in·kH·kW`) packed once
/// for `PackedGemm.multiply`: depth blocks of at most `PackedGemm.depthBlock` columns, each holding
/// panels of 8 rows stored column by column (row `r`, column `k` of a panel at `k·8 + r`); rows
/// past `rows` are zero.
public final class PackedMatrix: @unchecked Sendable {
    /// Rows of `A` (`m`).
    public let rows: Int
    /// Columns of `A` (`k`, the depth of the product).
    public let columns: Int
    /// Depth of every block but possibly the last.
    let blockDepth: Int
    /// Rows rounded up to whole panels.
    let paddedRows: Int
    let storage: UnsafeMutablePointer<Float>
    /// False when the caller lent `storage` (a buffer reused across products).
    let ownsStorage: Bool

    /// Packs `rows × columns` floats read with row stride `rowStride`.
    public convenience init(_ a: UnsafePointer<Float>, rows m: Int, columns k: Int, rowStride lda: Int) {
        let count = PackedMatrix.storageCount(rows: m, columns: k)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64).bindMemory(to: Float.self, capacity: count)
        self.init(a, rows: m, columns: k, rowStride: lda, storage: storage, owning: true)
    }

    /// Packs into `storage` (at least `storageCount(rows:columns:)` floats, 64-byte aligned), which
    /// the caller keeps and reuses: no allocation, no page faults for a product packed every call.
    public convenience init(_ a: UnsafePointer<Float>, rows m: Int, columns k: Int, rowStride lda: Int,
                            storage: UnsafeMutablePointer<Float>) {
        self.init(a, rows: m, columns: k, rowStride: lda, storage: storage, owning: false)
    }

    /// Floats a packed `rows × columns` matrix occupies.
    public static func storageCount(rows m: Int, columns k: Int) -> Int { max(1, (m + 7) / 8 * 8 * k) }

    /// A matrix over `storage` (`storageCount(rows:columns:)` floats, 64-byte aligned) that the
    /// caller fills in the packed layout (the packing initialisers here, `init(transposing:…)` in
    /// PackedMatrixTransposing.swift).
    init(rows m: Int, columns k: Int, storage: UnsafeMutablePointer<Float>, owning: Bool) {
        rows = m
        columns = k
        paddedRows = (m + 7) / 8 * 8
        let blocks = max(1, (k + PackedGemm.depthBlock - 1) / PackedGemm.depthBlock)
        blockDepth = (k + blocks - 1) / blocks
        self.storage = storage
        ownsStorage = owning
    }

    private convenience init(_ a: UnsafePointer<Float>, rows m: Int, columns k: Int, rowStride lda: Int,
                             storage: UnsafeMutablePointer<Float>, owning: Bool) {
        self.init(rows: m, columns: k, storage: storage, owning: owning)
        var k0 = 0
        while k0 < k {
            let depth = min(blockDepth, k - k0)
            for panel in 0 ..< paddedRows / 8 {
                let dst = storage + k0 * paddedRows + panel * 8 * depth
                let live = min(8, m - panel * 8)
                for r in 0 ..< live {
                    let src = a + (panel * 8 + r) * lda + k0
                    for kk in 0 ..< depth { dst[kk * 8 + r] = src[kk] }
                }
                // rows past `rows` are zero
                if live < 8 {
                    for kk in 0 ..< depth { for r in live ..< 8 { dst[kk * 8 + r] = 0 } }
                }
            }
            k0 += depth
        }
    }

    deinit { if ownsStorage { storage.deallocate() } }
}

/// `C = A·B` with `A` packed, `B` and `C` row-major, on one thread.
///
/// Panels of 48 columns of `B` are copied into an aligned buffer one depth block at a time (24 KiB,
/// inside the L1 cache) and multiplied by every 8-row panel of `A` with 24 vector accumulators.
public enum PackedGemm {
    /// Most columns of `A` (rows of `B`) multiplied per pass over `C`.
    public static let depthBlock = 160
    typealias V = SIMD16<Float>

    /// `C[m × n] = A[m × k] · B[k × n]`, overwriting `C` (row stride `ldc`); `B` has row stride `ldb`.
    /// `panels` limits the work to those 8-row panels of `A` and `C` (for splitting over threads).
    /// With `accumulate`, `C += A·B` instead.
    public static func multiply(_ a: PackedMatrix, b: UnsafePointer<Float>, ldb: Int, columns n: Int,
                                c: UnsafeMutablePointer<Float>, ldc: Int, panels: Range<Int>? = nil, accumulate: Bool = false) {
        let k = a.columns
        guard let (firstRow, m) = rowsToCompute(a, panels: panels, columns: n, c: c, ldc: ldc) else { return }
        // A larger than a core's L2 share would stream from memory once per 48-column panel: with a
        // few panels (a 7×7 plane is 48 + 1 columns), copy them all first and stream A once
        if n > 48 && n <= 4 * 48 && (m - firstRow) * k >= 1 << 18 {
            multiplyStationaryA(a, b: b, ldb: ldb, columns: n, c: c, ldc: ldc, rows: firstRow ..< m, accumulate: accumulate)
            return
        }
        withUnsafeTemporaryAllocation(byteCount: a.blockDepth * 48 * 4, alignment: 64) { raw in
            guard let base = raw.baseAddress else { return }
            let panel = base.bindMemory(to: Float.self, capacity: a.blockDepth * 48)
            var n0 = 0
            while n0 < n {
                let width = min(48, n - n0)
                var k0 = 0
                while k0 < k {
                    let depth = min(a.blockDepth, k - k0)
                    packColumns(b + k0 * ldb + n0, ldb: ldb, depth: depth, width: width, into: panel)
                    let blockA = a.storage + k0 * a.paddedRows
                    var m0 = firstRow
                    while m0 < m {
                        kernel(depth, blockA + m0 * depth, panel, c + m0 * ldc + n0, ldc: ldc,
                               accumulate: accumulate || k0 > 0, rows: min(8, m - m0), width: width)
                        m0 += 8
                    }
                    k0 += depth
                }
                n0 += 48
            }
        }
    }

    /// `multiply(_:b:ldb:…)` for the rows `rows` of `A` and `C` with every 48-column panel of `B`
    /// copied for a depth block before `A`'s block runs against all of them: each element of `A`
    /// is read once, and the sums are those of `multiply` bit for bit (same kernels, same blocks).
    static func multiplyStationaryA(_ a: PackedMatrix, b: UnsafePointer<Float>, ldb: Int, columns n: Int,
                                    c: UnsafeMutablePointer<Float>, ldc: Int, rows: Range<Int>, accumulate: Bool) {
        let k = a.columns
        let panelCount = (n + 47) / 48
        withUnsafeTemporaryAllocation(byteCount: panelCount * a.blockDepth * 48 * 4, alignment: 64) { raw in
            guard let base = raw.baseAddress else { return }
            let panels = base.bindMemory(to: Float.self, capacity: panelCount * a.blockDepth * 48)
            var k0 = 0
            while k0 < k {
                let depth = min(a.blockDepth, k - k0)
                for j in 0 ..< panelCount {
                    packColumns(b + k0 * ldb + 48 * j, ldb: ldb, depth: depth, width: min(48, n - 48 * j),
                                into: panels + j * depth * 48)
                }
                let blockA = a.storage + k0 * a.paddedRows
                var m0 = rows.lowerBound
                while m0 < rows.upperBound {
                    for j in 0 ..< panelCount {
                        kernel(depth, blockA + m0 * depth, panels + j * depth * 48, c + m0 * ldc + 48 * j, ldc: ldc,
                               accumulate: accumulate || k0 > 0, rows: min(8, rows.upperBound - m0), width: min(48, n - 48 * j))
                    }
                    m0 += 8
                }
                k0 += depth
            }
        }
    }

    /// The rows `firstRow ..< end` of `A` and `C` that `panels` selects, or nil when nothing is
    /// left to multiply (no rows or columns, or an empty depth, whose product is zeros: written here).
    @inline(__always)
    static func rowsToCompute(_ a: PackedMatrix, panels: Range<Int>?, columns n: Int,
                              c: UnsafeMutablePointer<Float>, ldc: Int) -> (firstRow: Int, end: Int)? {
        let panelRange = panels ?? 0 ..< (a.rows + 7) / 8
        let firstRow = panelRange.lowerBound * 8
        let end = min(a.rows, panelRange.upperBound * 8)
        if end <= firstRow || n == 0 { return nil }
        if a.columns == 0 {
            for i in firstRow ..< end { (c + i * ldc).update(repeating: 0, count: n) }
            return nil
        }
        return (firstRow, end)
    }

    /// Columns of `B` per panel.
    public static let panelWidth = 48

    /// `C = A·B` for `B` already laid out as panels (`multiply`'s copies, made by the caller while it
    /// computes `B`): panel `j` holds columns `48j ..< 48j + 48` as `k` rows of 48 floats, 64-byte
    /// aligned; columns past `n` in the last panel may hold anything. `panels` as in `multiply`.
    public static func multiply(_ a: PackedMatrix, panelsOfB b: UnsafePointer<Float>, columns n: Int,
                                c: UnsafeMutablePointer<Float>, ldc: Int, panels: Range<Int>? = nil) {
        let k = a.columns
        guard let (firstRow, m) = rowsToCompute(a, panels: panels, columns: n, c: c, ldc: ldc) else { return }
        // Each 8-row block of A is loaded once and run against every panel of B: A (a layer's
        // weights, often megabytes) streams through once, while B's current depth block (at most
        // a few hundred KiB for the callers' chunks) stays in L2.
        var k0 = 0
        while k0 < k {
            let depth = min(a.blockDepth, k - k0)
            let blockA = a.storage + k0 * a.paddedRows
            var m0 = firstRow
            while m0 < m {
                var n0 = 0
                while n0 < n {
                    kernel(depth, blockA + m0 * depth, b + n0 * k + k0 * 48, c + m0 * ldc + n0, ldc: ldc,
                           accumulate: k0 > 0, rows: min(8, m - m0), width: min(48, n - n0))
                    n0 += 48
                }
                m0 += 8
            }
            k0 += depth
        }
    }

    /// `C = A·B` with `B` read in place: row `kk` of `B` is the `n` floats at `b + rowOffsets[kk]`
    /// (for a stride-1 convolution, the zero-padded input shifted by each kernel tap, so the
    /// im2col matrix is never unfolded). Whole 48-column panels are loaded from there; a last
    /// panel of at most 32 columns is copied into a small panel first, so it runs on the narrow
    /// kernels, while a wider one is read 48 wide: every row needs `n` rounded up to 48 readable
    /// floats then (the extra columns are computed and dropped). `panels` as in `multiply(_:panelsOfB:…)`.
    public static func multiply(_ a: PackedMatrix, shiftedB b: UnsafePointer<Float>, rowOffsets: UnsafePointer<Int>,
                                columns n: Int, c: UnsafeMutablePointer<Float>, ldc: Int, panels: Range<Int>? = nil) {
        let k = a.columns
        guard let (firstRow, m) = rowsToCompute(a, panels: panels, columns: n, c: c, ldc: ldc) else { return }
        let tail = n % 48 <= 32 ? n % 48 : 0
        let shiftedColumns = n - tail
        withUnsafeTemporaryAllocation(byteCount: (tail > 0 ? a.blockDepth * 48 : 16) * 4, alignment: 64) { raw in
            guard let panel = raw.baseAddress?.bindMemory(to: Float.self, capacity: tail > 0 ? a.blockDepth * 48 : 16) else { return }
            // the copied columns stay within the first `tail` of each row: the rest is zero once
            if tail > 0 { panel.initialize(repeating: 0, count: a.blockDepth * 48) }
            var k0 = 0
            while k0 < k {
                let depth = min(a.blockDepth, k - k0)
                let blockA = a.storage + k0 * a.paddedRows
                if tail > 0 {
                    for kk in 0 ..< depth { (panel + kk * 48).update(from: b + rowOffsets[k0 + kk] + shiftedColumns, count: tail) }
                }
                var m0 = firstRow
                while m0 < m {
                    let rows = min(8, m - m0)
                    var n0 = 0
                    while n0 < shiftedColumns {
                        kernel48Shifted(depth, blockA + m0 * depth, b + n0, rowOffsets: rowOffsets + k0, c + m0 * ldc + n0, ldc: ldc,
                                        accumulate: k0 > 0, rows: rows, width: min(48, shiftedColumns - n0))
                        n0 += 48
                    }
                    if tail > 0 {
                        kernel(depth, blockA + m0 * depth, panel, c + m0 * ldc + shiftedColumns, ldc: ldc, accumulate: k0 > 0,
                               rows: rows, width: tail)
                    }
                    m0 += 8
                }
                k0 += depth
            }
        }
    }

    /// `C = A·B` for an unpacked `A` stored transposed (element `(i, kk)` at `a[kk·lda + i]`, as a
    /// transposed-convolution weight `[C_in, C_out·kH·kW]` holds its product's rows) and `B` laid out
    /// as in `multiply(_:panelsOfB:…)`, `depth` rows deep. The 8 rows of a panel at one depth are
    /// adjacent, so full panels are read in place (a weight used once per call is never packed);
    /// a last panel of fewer than 8 rows is copied, zero-padded, into a small buffer first.
    /// `panels` limits the product to those 8-row panels of `A` and `C`.
    public static func multiply(transposedA a: UnsafePointer<Float>, lda: Int, rows m: Int, depth k: Int,
                                panelsOfB b: UnsafePointer<Float>, columns n: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                                panels: Range<Int>? = nil) {
        let panelRange = panels ?? 0 ..< (m + 7) / 8
        let firstRow = panelRange.lowerBound * 8, end = min(m, panelRange.upperBound * 8)
        if end <= firstRow || n == 0 { return }
        if k == 0 {
            for i in firstRow ..< end { (c + i * ldc).update(repeating: 0, count: n) }
            return
        }
        let blocks = (k + depthBlock - 1) / depthBlock
        let blockDepth = (k + blocks - 1) / blocks
        withUnsafeTemporaryAllocation(byteCount: blockDepth * 8 * 4, alignment: 64) { raw in
            guard let edge = raw.baseAddress?.bindMemory(to: Float.self, capacity: blockDepth * 8) else { return }
            var k0 = 0
            while k0 < k {
                let depth = min(blockDepth, k - k0)
                var m0 = firstRow
                while m0 < end {
                    let rows = min(8, end - m0)
                    var panelA = a + k0 * lda + m0
                    var aStride = lda
                    if rows < 8 {
                        for kk in 0 ..< depth {
                            (edge + kk * 8).update(from: panelA + kk * lda, count: rows)
                            (edge + kk * 8 + rows).update(repeating: 0, count: 8 - rows)
                        }
                        panelA = UnsafePointer(edge)
                        aStride = 8
                    }
                    var n0 = 0
                    while n0 < n {
                        kernel(depth, panelA, b + n0 * k + k0 * 48, c + m0 * ldc + n0, ldc: ldc,
                               accumulate: k0 > 0, rows: rows, width: min(48, n - n0), aStride: aStride)
                        n0 += 48
                    }
                    m0 += 8
                }
                k0 += depth
            }
        }
    }

    /// `C[m × n] += A · B` over the whole `depth` in one pass per tile, for `A` as 8-row panels
    /// (`TransposedPanels.packRows`: panel `i` at `a + 8i·depth`, column `kk` of it at `+ 8kk`) and
    /// `B` as 48-column panels (`multiply(_:panelsOfB:…)`'s layout, panel `j` at `b + 48j·depth`).
    /// Each panel of `B` stays in L1 while every panel of `A` runs against it; `depth` should keep
    /// a panel of `B` well inside L1 (≤ 160 rows).
    public static func multiplyAdd(panelsOfA a: UnsafePointer<Float>, rows m: Int, depth: Int, panelsOfB b: UnsafePointer<Float>,
                                   columns n: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if depth == 0 { return }
        var n0 = 0
        while n0 < n {
            let width = min(48, n - n0)
            var m0 = 0
            while m0 < m {
                kernel(depth, a + m0 * depth, b + n0 * depth, c + m0 * ldc + n0, ldc: ldc,
                       accumulate: true, rows: min(8, m - m0), width: width)
                m0 += 8
            }
            n0 += 48
        }
    }

    /// Copies `depth` rows of `width` (≤ 48) floats into rows of 48, zero-filling the rest.
    @inline(__always)
    static func packColumns(_ b: UnsafePointer<Float>, ldb: Int, depth: Int, width: Int, into p: UnsafeMutablePointer<Float>) {
        if width == 48 {
            for kk in 0 ..< depth {
                let s = UnsafeRawPointer(b + kk * ldb), d = UnsafeMutableRawPointer(p + kk * 48)
                d.storeBytes(of: s.loadUnaligned(as: V.self), as: V.self)
                d.storeBytes(of: s.loadUnaligned(fromByteOffset: 64, as: V.self), toByteOffset: 64, as: V.self)
                d.storeBytes(of: s.loadUnaligned(fromByteOffset: 128, as: V.self), toByteOffset: 128, as: V.self)
            }
            return
        }
        for kk in 0 ..< depth {
            let d = p + kk * 48
            d.update(from: b + kk * ldb, count: width)
            (d + width).update(repeating: 0, count: 48 - width)
        }
    }

    /// `C[rows × width] (+)= A-panel · B-panel` over `depth`, with the narrowest kernel that covers
    /// `width` (so a ragged last panel of 1–16 columns costs a third of a full one). The A-panel's
    /// 8 values of depth `kk` lie at `a + kk·aStride` (8 when packed).
    @inline(__always)
    static func kernel(_ depth: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                       ldc: Int, accumulate: Bool, rows: Int, width: Int, aStride: Int = 8) {
        if width > 32 {
            kernel48(depth, a, b, c, ldc: ldc, accumulate: accumulate, rows: rows, width: width, aStride: aStride)
        } else if width > 16 {
            kernel32(depth, a, b, c, ldc: ldc, accumulate: accumulate, rows: rows, width: width, aStride: aStride)
        } else if width > 4 {
            kernel16(depth, a, b, c, ldc: ldc, accumulate: accumulate, rows: rows, width: width, aStride: aStride)
        } else {
            kernelNarrow(depth, a, b, c, ldc: ldc, accumulate: accumulate, rows: rows, width: width, aStride: aStride)
        }
    }

    /// `C[rows × width] (+)= A-panel · B-panel` for `width` ≤ 4 (the last pixel of a 7×7 plane, 49 =
    /// 48 + 1): one 8-row vector of `A` per depth against each column's broadcast value, a quarter of
    /// `kernel16`'s instructions for one column. Each element is the same FMA chain over the depth as
    /// in the wider kernels, so the result is bit-identical to theirs.
    @inline(__always)
    static func kernelNarrow(_ depth: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                             ldc: Int, accumulate: Bool, rows: Int, width: Int, aStride: Int) {
        typealias V8 = SIMD8<Float>
        var acc = (V8(), V8(), V8(), V8())
        var pa = a, pb = b
        if width == 1 {
            for _ in 0 ..< depth {
                acc.0.addProduct(UnsafeRawPointer(pa).loadUnaligned(as: V8.self), V8(repeating: pb[0]))
                pa += aStride
                pb += 48
            }
        } else {
            // a B-panel row is 48 floats: columns up to 3 are always there to read
            for _ in 0 ..< depth {
                let x = UnsafeRawPointer(pa).loadUnaligned(as: V8.self)
                acc.0.addProduct(x, V8(repeating: pb[0]))
                acc.1.addProduct(x, V8(repeating: pb[1]))
                acc.2.addProduct(x, V8(repeating: pb[2]))
                acc.3.addProduct(x, V8(repeating: pb[3]))
                pa += aStride
                pb += 48
            }
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 8 * 4) { t in
            guard let tile = t.baseAddress else { return }
            // tile[r·4 + j] = acc_j[r]
            for r in 0 ..< 8 {
                tile[r * 4] = acc.0[r]
                tile[r * 4 + 1] = acc.1[r]
                tile[r * 4 + 2] = acc.2[r]
                tile[r * 4 + 3] = acc.3[r]
            }
            copyOut(tile, tileWidth: 4, rows: rows, width: width, to: c, ldc: ldc, accumulate: accumulate)
        }
    }

    /// `C[rows × width] (+)= A-panel · B-panel` over `depth` with 3 vector(s) of 16 columns
    /// per row (width ≤ 48); B-panel rows are 48 floats apart. Full 8×48 tiles go straight to
    /// `C`; edge tiles through a local tile and `copyOut`.
    @inline(__always)
    static func kernel48(_ depth: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                        ldc: Int, accumulate: Bool, rows: Int, width: Int, aStride: Int = 8) {
        var acc: Tile48 = (V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V())
        var pa = a, pb = b
        for _ in 0 ..< depth {
            let row = UnsafeRawPointer(pb)
            step48(&acc, pa, row.load(fromByteOffset: 0, as: V.self), row.load(fromByteOffset: 64, as: V.self),
                   row.load(fromByteOffset: 128, as: V.self))
            pa += aStride
            pb += 48
        }
        store48(acc, c, ldc: ldc, accumulate: accumulate, rows: rows, width: width)
    }

    /// `C[rows × width] (+)= A-panel · B` over `depth`, row `kk` of `B` read in place at
    /// `b + rowOffsets[kk]` (unaligned): 48 columns are always read, so `B` must have 48 readable
    /// floats at every row's start; only `width` of them reach `C`.
    @inline(__always)
    static func kernel48Shifted(_ depth: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, rowOffsets: UnsafePointer<Int>,
                                _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, rows: Int, width: Int) {
        var acc: Tile48 = (V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V())
        var pa = a
        for kk in 0 ..< depth {
            let row = UnsafeRawPointer(b + rowOffsets[kk])
            step48(&acc, pa, row.loadUnaligned(fromByteOffset: 0, as: V.self), row.loadUnaligned(fromByteOffset: 64, as: V.self),
                   row.loadUnaligned(fromByteOffset: 128, as: V.self))
            pa += 8
        }
        store48(acc, c, ldc: ldc, accumulate: accumulate, rows: rows, width: width)
    }

    /// The 24 accumulators of an 8×48 tile: row `r` in `.(3r) … .(3r+2)`.
    typealias Tile48 = (V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V)

    /// One depth step of an 8×48 tile: `acc[r] += a[r] · (b0, b1, b2)` for the A-panel's 8 values at `pa`.
    @inline(__always)
    static func step48(_ acc: inout Tile48, _ pa: UnsafePointer<Float>, _ b0: V, _ b1: V, _ b2: V) {
        var x: V
        x = V(repeating: pa[0]); acc.0.addProduct(x, b0); acc.1.addProduct(x, b1); acc.2.addProduct(x, b2)
        x = V(repeating: pa[1]); acc.3.addProduct(x, b0); acc.4.addProduct(x, b1); acc.5.addProduct(x, b2)
        x = V(repeating: pa[2]); acc.6.addProduct(x, b0); acc.7.addProduct(x, b1); acc.8.addProduct(x, b2)
        x = V(repeating: pa[3]); acc.9.addProduct(x, b0); acc.10.addProduct(x, b1); acc.11.addProduct(x, b2)
        x = V(repeating: pa[4]); acc.12.addProduct(x, b0); acc.13.addProduct(x, b1); acc.14.addProduct(x, b2)
        x = V(repeating: pa[5]); acc.15.addProduct(x, b0); acc.16.addProduct(x, b1); acc.17.addProduct(x, b2)
        x = V(repeating: pa[6]); acc.18.addProduct(x, b0); acc.19.addProduct(x, b1); acc.20.addProduct(x, b2)
        x = V(repeating: pa[7]); acc.21.addProduct(x, b0); acc.22.addProduct(x, b1); acc.23.addProduct(x, b2)
    }

    /// An 8×48 tile's accumulators into `C[rows × width]`,
    /// added or stored: a full tile straight to `C`, an edge tile through a local tile and `copyOut`.
    @inline(__always)
    static func store48(_ acc: Tile48,
                        _ c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, rows: Int, width: Int) {
        @inline(__always) func put(_ p: UnsafeMutablePointer<Float>, _ v0: V, _ v1: V, _ v2: V, add: Bool) {
            let r = UnsafeMutableRawPointer(p)
            if add {
                r.storeBytes(of: r.loadUnaligned(fromByteOffset: 0, as: V.self) + v0, toByteOffset: 0, as: V.self)
                r.storeBytes(of: r.loadUnaligned(fromByteOffset: 64, as: V.self) + v1, toByteOffset: 64, as: V.self)
                r.storeBytes(of: r.loadUnaligned(fromByteOffset: 128, as: V.self) + v2, toByteOffset: 128, as: V.self)
            } else {
                r.storeBytes(of: v0, toByteOffset: 0, as: V.self)
                r.storeBytes(of: v1, toByteOffset: 64, as: V.self)
                r.storeBytes(of: v2, toByteOffset: 128, as: V.self)
            }
        }
        if rows == 8 && width == 48 {
            put(c + 0 * ldc, acc.0, acc.1, acc.2, add: accumulate)
            put(c + 1 * ldc, acc.3, acc.4, acc.5, add: accumulate)
            put(c + 2 * ldc, acc.6, acc.7, acc.8, add: accumulate)
            put(c + 3 * ldc, acc.9, acc.10, acc.11, add: accumulate)
            put(c + 4 * ldc, acc.12, acc.13, acc.14, add: accumulate)
            put(c + 5 * ldc, acc.15, acc.16, acc.17, add: accumulate)
            put(c + 6 * ldc, acc.18, acc.19, acc.20, add: accumulate)
            put(c + 7 * ldc, acc.21, acc.22, acc.23, add: accumulate)
            return
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 8 * 48) { t in
            guard let tile = t.baseAddress else { return }
            put(tile + 0 * 48, acc.0, acc.1, acc.2, add: false)
            put(tile + 1 * 48, acc.3, acc.4, acc.5, add: false)
            put(tile + 2 * 48, acc.6, acc.7, acc.8, add: false)
            put(tile + 3 * 48, acc.9, acc.10, acc.11, add: false)
            put(tile + 4 * 48, acc.12, acc.13, acc.14, add: false)
            put(tile + 5 * 48, acc.15, acc.16, acc.17, add: false)
            put(tile + 6 * 48, acc.18, acc.19, acc.20, add: false)
            put(tile + 7 * 48, acc.21, acc.22, acc.23, add: false)
            copyOut(tile, tileWidth: 48, rows: rows, width: width, to: c, ldc: ldc, accumulate: accumulate)
        }
    }

    /// `C[rows × width] (+)= A-panel · B-panel` over `depth` with 2 vector(s) of 16 columns
    /// per row (width ≤ 32); B-panel rows are 48 floats apart. Full 8×32 tiles go straight to
    /// `C`; edge tiles through a local tile and `copyOut`.
    @inline(__always)
    static func kernel32(_ depth: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                        ldc: Int, accumulate: Bool, rows: Int, width: Int, aStride: Int = 8) {
        var acc = (V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V())
        var pa = a, pb = b
        for _ in 0 ..< depth {
            let b0 = UnsafeRawPointer(pb).load(fromByteOffset: 0, as: V.self)
            let b1 = UnsafeRawPointer(pb).load(fromByteOffset: 64, as: V.self)
            var x: V
            x = V(repeating: pa[0]); acc.0.addProduct(x, b0); acc.1.addProduct(x, b1)
            x = V(repeating: pa[1]); acc.2.addProduct(x, b0); acc.3.addProduct(x, b1)
            x = V(repeating: pa[2]); acc.4.addProduct(x, b0); acc.5.addProduct(x, b1)
            x = V(repeating: pa[3]); acc.6.addProduct(x, b0); acc.7.addProduct(x, b1)
            x = V(repeating: pa[4]); acc.8.addProduct(x, b0); acc.9.addProduct(x, b1)
            x = V(repeating: pa[5]); acc.10.addProduct(x, b0); acc.11.addProduct(x, b1)
            x = V(repeating: pa[6]); acc.12.addProduct(x, b0); acc.13.addProduct(x, b1)
            x = V(repeating: pa[7]); acc.14.addProduct(x, b0); acc.15.addProduct(x, b1)
            pa += aStride
            pb += 48
        }
        @inline(__always) func put(_ p: UnsafeMutablePointer<Float>, _ v0: V, _ v1: V, add: Bool) {
            let r = UnsafeMutableRawPointer(p)
            if add {
                r.storeBytes(of: r.loadUnaligned(fromByteOffset: 0, as: V.self) + v0, toByteOffset: 0, as: V.self)
                r.storeBytes(of: r.loadUnaligned(fromByteOffset: 64, as: V.self) + v1, toByteOffset: 64, as: V.self)
            } else {
                r.storeBytes(of: v0, toByteOffset: 0, as: V.self)
                r.storeBytes(of: v1, toByteOffset: 64, as: V.self)
            }
        }
        if rows == 8 && width == 32 {
            put(c + 0 * ldc, acc.0, acc.1, add: accumulate)
            put(c + 1 * ldc, acc.2, acc.3, add: accumulate)
            put(c + 2 * ldc, acc.4, acc.5, add: accumulate)
            put(c + 3 * ldc, acc.6, acc.7, add: accumulate)
            put(c + 4 * ldc, acc.8, acc.9, add: accumulate)
            put(c + 5 * ldc, acc.10, acc.11, add: accumulate)
            put(c + 6 * ldc, acc.12, acc.13, add: accumulate)
            put(c + 7 * ldc, acc.14, acc.15, add: accumulate)
            return
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 8 * 32) { t in
            guard let tile = t.baseAddress else { return }
            put(tile + 0 * 32, acc.0, acc.1, add: false)
            put(tile + 1 * 32, acc.2, acc.3, add: false)
            put(tile + 2 * 32, acc.4, acc.5, add: false)
            put(tile + 3 * 32, acc.6, acc.7, add: false)
            put(tile + 4 * 32, acc.8, acc.9, add: false)
            put(tile + 5 * 32, acc.10, acc.11, add: false)
            put(tile + 6 * 32, acc.12, acc.13, add: false)
            put(tile + 7 * 32, acc.14, acc.15, add: false)
            copyOut(tile, tileWidth: 32, rows: rows, width: width, to: c, ldc: ldc, accumulate: accumulate)
        }
    }

    /// `C[rows × width] (+)= A-panel · B-panel` over `depth` with 1 vector(s) of 16 columns
    /// per row (width ≤ 16); B-panel rows are 48 floats apart. Full 8×16 tiles go straight to
    /// `C`; edge tiles through a local tile and `copyOut`.
    @inline(__always)
    static func kernel16(_ depth: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                        ldc: Int, accumulate: Bool, rows: Int, width: Int, aStride: Int = 8) {
        var acc = (V(), V(), V(), V(), V(), V(), V(), V())
        var pa = a, pb = b
        for _ in 0 ..< depth {
            let b0 = UnsafeRawPointer(pb).load(fromByteOffset: 0, as: V.self)
            var x: V
            x = V(repeating: pa[0]); acc.0.addProduct(x, b0)
            x = V(repeating: pa[1]); acc.1.addProduct(x, b0)
            x = V(repeating: pa[2]); acc.2.addProduct(x, b0)
            x = V(repeating: pa[3]); acc.3.addProduct(x, b0)
            x = V(repeating: pa[4]); acc.4.addProduct(x, b0)
            x = V(repeating: pa[5]); acc.5.addProduct(x, b0)
            x = V(repeating: pa[6]); acc.6.addProduct(x, b0)
            x = V(repeating: pa[7]); acc.7.addProduct(x, b0)
            pa += aStride
            pb += 48
        }
        @inline(__always) func put(_ p: UnsafeMutablePointer<Float>, _ v0: V, add: Bool) {
            let r = UnsafeMutableRawPointer(p)
            if add {
                r.storeBytes(of: r.loadUnaligned(fromByteOffset: 0, as: V.self) + v0, toByteOffset: 0, as: V.self)
            } else {
                r.storeBytes(of: v0, toByteOffset: 0, as: V.self)
            }
        }
        if rows == 8 && width == 16 {
            put(c + 0 * ldc, acc.0, add: accumulate)
            put(c + 1 * ldc, acc.1, add: accumulate)
            put(c + 2 * ldc, acc.2, add: accumulate)
            put(c + 3 * ldc, acc.3, add: accumulate)
            put(c + 4 * ldc, acc.4, add: accumulate)
            put(c + 5 * ldc, acc.5, add: accumulate)
            put(c + 6 * ldc, acc.6, add: accumulate)
            put(c + 7 * ldc, acc.7, add: accumulate)
            return
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 8 * 16) { t in
            guard let tile = t.baseAddress else { return }
            put(tile + 0 * 16, acc.0, add: false)
            put(tile + 1 * 16, acc.1, add: false)
            put(tile + 2 * 16, acc.2, add: false)
            put(tile + 3 * 16, acc.3, add: false)
            put(tile + 4 * 16, acc.4, add: false)
            put(tile + 5 * 16, acc.5, add: false)
            put(tile + 6 * 16, acc.6, add: false)
            put(tile + 7 * 16, acc.7, add: false)
            copyOut(tile, tileWidth: 16, rows: rows, width: width, to: c, ldc: ldc, accumulate: accumulate)
        }
    }

    /// The `rows × width` corner of an edge tile (row stride `tileWidth`) into `C`, added or stored.
    @inline(__always)
    static func copyOut(_ tile: UnsafePointer<Float>, tileWidth: Int, rows: Int, width: Int,
                        to c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        for r in 0 ..< rows {
            let src = tile + r * tileWidth, dst = c + r * ldc
            if accumulate {
                for j in 0 ..< width { dst[j] += src[j] }
            } else {
                dst.update(from: src, count: width)
            }
        }
    }
}
