// Packing a weight that changes every step (training) by in-register transposes.

extension PackedMatrix {
    /// `init(_:rows:columns:rowStride:)` with each depth block's panels made sixteen rows by sixteen
    /// columns at a time (`TransposedPanels.packRows`) instead of element by element: the same
    /// floats in the same places (a copy, no arithmetic), for a weight packed once per training step.
    public convenience init(transposing a: UnsafePointer<Float>, rows m: Int, columns k: Int, rowStride lda: Int) {
        let count = PackedMatrix.storageCount(rows: m, columns: k)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64).bindMemory(to: Float.self, capacity: count)
        self.init(rows: m, columns: k, storage: storage, owning: true)
        var k0 = 0
        while k0 < k {
            let depth = min(blockDepth, k - k0)
            TransposedPanels.packRows(a + k0, rowStride: lda, rows: m, count: depth, column: 0, depth: depth,
                                      into: storage + k0 * paddedRows)
            k0 += depth
        }
    }
}

extension PackedMatrix {
    /// The packed floats in storage order (tests compare packers through it).
    public var packedFloats: [Float] {
        Array(UnsafeBufferPointer(start: storage, count: PackedMatrix.storageCount(rows: rows, columns: columns)))
    }
}

extension PackedMatrix {
    /// A `rows × columns` matrix whose packed floats the caller writes through `storageStart` and
    /// `panelColumnOffset` (a producer that makes panel columns directly, such as a training step's
    /// Winograd weight transform): every float, padding rows included, must be written before use.
    public convenience init(unfilledRows m: Int, columns k: Int) {
        let count = PackedMatrix.storageCount(rows: m, columns: k)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64).bindMemory(to: Float.self, capacity: count)
        self.init(rows: m, columns: k, storage: storage, owning: true)
    }

    /// The first packed float.
    public var storageStart: UnsafeMutablePointer<Float> { storage }

    /// Where rows `8·panel ..< 8·panel + 8` of column `column` lie (eight adjacent floats), from `storageStart`.
    @inline(__always)
    public func panelColumnOffset(panel: Int, column: Int) -> Int {
        let k0 = column / blockDepth * blockDepth
        return k0 * paddedRows + panel * 8 * min(blockDepth, columns - k0) + (column - k0) * 8
    }
}
