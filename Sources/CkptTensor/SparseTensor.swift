/// A sparse tensor as torch saves one: a layout, a logical size, index tensors and a values
/// tensor, each an ordinary strided tensor over the file's storages.
///
/// PyTorch counterpart: what `torch._utils._rebuild_sparse_tensor(layout, data)` builds —
/// `torch.sparse_coo_tensor(indices, values, size, is_coalesced=...)` or
/// `torch.sparse_compressed_tensor(compressed_indices, plain_indices, values, size, layout=...)` —
/// and the invariants `torch.load(weights_only=True)` checks on it after loading
/// (`_validate_sparse_coo_tensor_args`, `_validate_sparse_compressed_tensor_args`).
public struct SparseTensor: Sendable {
    /// torch's sparse layouts (`torch.sparse_coo` …), named as `str(layout)` without `torch.`.
    public enum Layout: String, Sendable, CaseIterable {
        case coo = "sparse_coo", csr = "sparse_csr", csc = "sparse_csc", bsr = "sparse_bsr", bsc = "sparse_bsc"

        /// True for the compressed layouts (CSR, CSC and their blocked forms).
        public var isCompressed: Bool { self != .coo }
        /// True for BSR and BSC, whose values are blocks.
        public var isBlocked: Bool { self == .bsr || self == .bsc }
        /// True when rows are compressed (CSR, BSR); columns are for CSC and BSC.
        public var compressesRows: Bool { self == .csr || self == .bsr }
    }

    /// The layout.
    public let layout: Layout
    /// The logical (dense) size.
    public let size: [Int]
    /// COO: `[indices]` (`sparse_dim × nnz`, int64). Compressed: `[compressed_indices,
    /// plain_indices]` (`crow_indices`/`col_indices` for CSR and BSR, `ccol_indices`/`row_indices`
    /// for CSC and BSC).
    public let indices: [Tensor]
    /// The stored values (`nnz` first, after any batch dimensions; blocks and dense dimensions after).
    public let values: Tensor
    /// COO only: the saved `is_coalesced()` flag; nil when the file gave none (torch before 2.1).
    public let isCoalesced: Bool?
    /// True when the file saved an `nn.Parameter` around the sparse tensor.
    public var isParameter = false
    /// `requires_grad` as saved (only a Parameter carries it: torch drops it for a plain sparse tensor).
    public var requiresGrad = false

    /// A sparse tensor from its parts; the structure is checked here, the index values by `validate()`.
    /// - Throws: `TensorError.badView` naming the first part that does not fit, as torch's
    ///   constructors refuse it.
    public init(layout: Layout, size: [Int], indices: [Tensor], values: Tensor, isCoalesced: Bool? = nil) throws {
        guard size.allSatisfy({ $0 >= 0 }) else { throw TensorError.badView("negative size in \(size)") }
        guard Checked.product(size) != nil else { throw TensorError.overflow("element count of size \(size)") }
        guard !values.dtype.isQuantized else {
            throw TensorError.badView("\(layout.rawValue) values are \(values.dtype.rawValue); torch has no quantized sparse tensors")
        }
        self.layout = layout
        self.size = size
        self.indices = indices
        self.values = values
        self.isCoalesced = layout == .coo ? isCoalesced : nil
        if layout == .coo { try checkCOOShapes() } else { try checkCompressedShapes() }
    }

    /// The value's element type.
    public var dtype: DType { values.dtype }

    /// Number of specified elements (`t._nnz()`).
    public var nnz: Int {
        switch layout {
        case .coo: return indices[0].shape[1]
        default: return indices[1].shape.last ?? 0
        }
    }

    /// One line for reports: `sparse_coo float32 [2708, 2708] nnz 10556`.
    public var summary: String {
        "\(layout.rawValue) \(dtype.rawValue) [\(size.map(String.init).joined(separator: ", "))] nnz \(nnz)"
    }

    /// Every tensor the sparse tensor is made of, in the order torch pickles them.
    public var parts: [Tensor] { indices + [values] }

    /// Bytes of the storages the parts view (each storage once: an expanded view costs its storage).
    public var storedBytes: Int {
        var seen = Set<ObjectIdentifier>()
        return parts.reduce(0) { seen.insert(ObjectIdentifier($1.storage)).inserted ? $0 &+ $1.storage.byteCount : $0 }
    }

    // MARK: structure

    private var batchDims: Int { layout == .coo ? 0 : indices[0].shape.count - 1 }

    private func checkCOOShapes() throws {
        guard indices.count == 1 else { throw TensorError.badView("sparse_coo has \(indices.count) index tensors, expected 1") }
        let ix = indices[0]
        guard ix.dtype == .int64 else { throw TensorError.badView("sparse_coo indices must be an int64 tensor, got \(ix.dtype.rawValue)") }
        guard ix.shape.count == 2 else { throw TensorError.badView("sparse_coo indices must be sparse_dim x nnz, but got \(ix.shape)") }
        guard values.shape.count >= 1 else { throw TensorError.badView("sparse_coo values must have at least one dimension (nnz)") }
        let sparseDim = ix.shape[0], nnz = ix.shape[1]
        guard values.shape[0] == nnz else {
            throw TensorError.badView("sparse_coo indices and values disagree on nnz: \(nnz) vs \(values.shape[0])")
        }
        let denseSizes = Array(values.shape.dropFirst())
        guard size.count == sparseDim + denseSizes.count else {
            throw TensorError.badView("sparse_coo size \(size) has \(size.count) dimensions, expected sparse_dim \(sparseDim) + dense_dim \(denseSizes.count)")
        }
        guard Array(size[sparseDim...]) == denseSizes else {
            throw TensorError.badView("sparse_coo dense dimensions of size \(size) are \(Array(size[sparseDim...])), values have \(denseSizes)")
        }
    }

    private func checkCompressedShapes() throws {
        let name = layout.rawValue
        guard indices.count == 2 else { throw TensorError.badView("\(name) has \(indices.count) index tensors, expected 2") }
        let c = indices[0], p = indices[1]
        guard c.dtype == p.dtype, c.dtype == .int64 || c.dtype == .int32 else {
            throw TensorError.badView("\(name) compressed and plain indices must both be int32 or both int64, got \(c.dtype.rawValue) and \(p.dtype.rawValue)")
        }
        guard c.shape.count >= 1, p.shape.count == c.shape.count else {
            throw TensorError.badView("\(name) compressed indices \(c.shape) and plain indices \(p.shape) must have the same number (>= 1) of dimensions")
        }
        let b = c.shape.count - 1
        let blockDims = layout.isBlocked ? 2 : 0
        guard values.shape.count >= b + 1 + blockDims else {
            throw TensorError.badView("\(name) values of shape \(values.shape) have too few dimensions for \(b) batch dimension(s)")
        }
        let denseDims = values.shape.count - b - 1 - blockDims
        guard size.count == b + 2 + denseDims else {
            throw TensorError.badView("\(name) size \(size) has \(size.count) dimensions, expected \(b) batch + 2 + \(denseDims) dense")
        }
        let batch = Array(c.shape[..<b])
        guard Array(p.shape[..<b]) == batch, Array(values.shape[..<b]) == batch, Array(size[..<b]) == batch else {
            throw TensorError.badView("\(name) batch dimensions disagree: indices \(c.shape) and \(p.shape), values \(values.shape), size \(size)")
        }
        let nnz = p.shape[b]
        guard values.shape[b] == nnz else {
            throw TensorError.badView("\(name) plain indices and values disagree on nnz: \(nnz) vs \(values.shape[b])")
        }
        let block = layout.isBlocked ? [values.shape[b + 1], values.shape[b + 2]] : [1, 1]
        guard block.allSatisfy({ $0 > 0 }), size[b] % block[0] == 0, size[b + 1] % block[1] == 0 else {
            throw TensorError.badView("\(name) size \(Array(size[b ..< b + 2])) is not a multiple of the block size \(block)")
        }
        let compressedDim = layout.compressesRows ? 0 : 1
        let compressedCount = size[b + compressedDim] / block[compressedDim]
        guard c.shape[b] == compressedCount + 1 else {
            throw TensorError.badView("\(name) compressed indices have \(c.shape[b]) entries per batch, expected \(compressedCount + 1)")
        }
        guard Array(values.shape[(b + 1 + blockDims)...]) == Array(size[(b + 2)...]) else {
            throw TensorError.badView("\(name) dense dimensions of size \(size) do not match values \(values.shape)")
        }
        if c.dtype == .int32 {
            guard nnz <= Int(Int32.max), size.allSatisfy({ $0 <= Int(Int32.max) }) else {
                throw TensorError.badView("\(name) with int32 indices holds sizes or nnz past 2^31 - 1")
            }
        }
    }

    // MARK: index values

    /// Checks the index values as torch does after a `weights_only` load: COO indices inside
    /// `[0, size)` and, when saved as coalesced, sorted without repeats; compressed indices
    /// starting at 0, ending at nnz, never decreasing by more than the plain dimension's length,
    /// plain indices inside it and sorted and distinct in every compressed row.
    /// - Throws: `TensorError.badView` with torch's wording of the first broken invariant; storage
    ///   read errors.
    public func validate() throws {
        if layout == .coo { try validateCOO() } else { try validateCompressed() }
    }

    private func validateCOO() throws {
        let ix = indices[0]
        let sparseDim = ix.shape[0], nnz = ix.shape[1]
        guard nnz > 0 else { return }
        try ix.withIntegerElements { flat in try checkCOO(flat, sparseDim: sparseDim, nnz: nnz) }
    }

    private func checkCOO(_ flat: IntegerElements, sparseDim: Int, nnz: Int) throws {
        for d in 0 ..< sparseDim {
            var lo = Int.max, hi = Int.min
            for j in (d * nnz) ..< ((d + 1) * nnz) {
                let x = flat[j]
                lo = Swift.min(lo, x)
                hi = Swift.max(hi, x)
            }
            if lo < 0 { throw TensorError.badView("found negative index \(lo) for dim \(d)") }
            if hi >= size[d] {
                throw TensorError.badView("size is inconsistent with indices: for dim \(d), size is \(size[d]) but found index \(hi)")
            }
        }
        guard isCoalesced == true, nnz > 1 else { return }
        // coalesced: the index columns strictly increase lexicographically (flattened order)
        for j in 1 ..< nnz {
            var order = 0
            for d in 0 ..< sparseDim where order == 0 {
                let a = flat[d * nnz + j - 1], b = flat[d * nnz + j]
                order = a < b ? -1 : (a > b ? 1 : 0)
            }
            if order >= 0 {
                throw TensorError.badView("cannot set is_coalesced to true if indices correspond to uncoalesced COO tensor")
            }
        }
    }

    private func validateCompressed() throws {
        let c = indices[0], p = indices[1]
        let b = c.shape.count - 1
        let batches = c.shape[..<b].reduce(1, *)
        let segments = c.shape[b], nnz = p.shape[b]
        let plainDim = layout.compressesRows ? 1 : 0
        let block = layout.isBlocked ? values.shape[b + 1 + plainDim] : 1
        let plainCount = size[b + plainDim] / block
        let (cName, pName) = layout.compressesRows ? ("crow_indices", "col_indices") : ("ccol_indices", "row_indices")
        let (cCount, pCount) = layout.compressesRows ? ("nrows", "ncols") : ("ncols", "nrows")
        guard batches > 0 else { return }
        try c.withIntegerElements { cv in
            try p.withIntegerElements { pv in
                try checkCompressed(cv, pv, batches: batches, segments: segments, nnz: nnz, plainCount: plainCount,
                                    names: (cName, pName), counts: (cCount, pCount))
            }
        }
    }

    private func checkCompressed(_ cv: IntegerElements, _ pv: IntegerElements, batches: Int, segments: Int, nnz: Int, plainCount: Int,
                                 names: (String, String), counts: (String, String)) throws {
        let (cName, pName) = names, (cCount, pCount) = counts
        for k in 0 ..< batches {
            let base = k * segments
            guard cv[base] == 0 else { throw TensorError.badView("`\(cName)[..., 0] == 0` is not satisfied.") }
            guard cv[base + segments - 1] == nnz else { throw TensorError.badView("`\(cName)[..., -1] == nnz` is not satisfied.") }
            var previous = 0
            for i in 1 ..< segments {
                let x = cv[base + i]
                let d = x - previous
                guard d >= 0, d <= plainCount else {
                    throw TensorError.badView("`0 <= \(cName)[..., 1:] - \(cName)[..., :-1] <= \(pCount)` is not satisfied.")
                }
                for j in (k * nnz + previous) ..< (k * nnz + x) {
                    let q = pv[j]
                    guard q >= 0, q < plainCount else { throw TensorError.badView("`0 <= \(pName) < \(pCount)` is not satisfied.") }
                    if j > k * nnz + previous, pv[j - 1] >= q {
                        throw TensorError.badView("`\(pName)[..., \(cName)[..., i - 1]:\(cName)[..., i]] for all i = 1, ..., \(cCount) are sorted and distinct along the last dimension values` is not satisfied.")
                    }
                }
                previous = x
            }
        }
    }
}

/// The elements of an int64 or int32 tensor read in place (contiguous little-endian bytes), as `Int`s.
struct IntegerElements {
    let raw: UnsafeRawBufferPointer
    let wide: Bool

    subscript(i: Int) -> Int {
        wide ? Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)))
            : Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
    }
}

extension Tensor {
    /// Calls `body` with the elements of an int64 or int32 tensor, read in place (one gathered
    /// copy at most for a strided view, never an array of `Int`s).
    func withIntegerElements<R>(_ body: (IntegerElements) throws -> R) throws -> R {
        guard dtype == .int64 || dtype == .int32 else { throw TensorError.unsupportedDType(dtype, "expected int64 or int32 indices") }
        return try withContiguousBytes { try body(IntegerElements(raw: $0, wide: dtype == .int64)) }
    }

    /// The elements of an int64 or int32 tensor as `Int`s, in row-major order.
    /// - Throws: `TensorError.unsupportedDType` for other dtypes; storage read errors.
    public func integerValues() throws -> [Int] {
        try withIntegerElements { e in (0 ..< elementCount).map { e[$0] } }
    }
}

/// A tensor saved from torch's meta device: a dtype, shape and strides, and no values at all.
///
/// PyTorch counterpart: what `torch._utils._rebuild_meta_tensor_no_storage(dtype, size, stride,
/// requires_grad)` builds (`torch.empty_strided(..., device='meta')`): a model initialised on the
/// meta device (`init_empty_weights`, `torch.device('meta')`) and saved before its weights were
/// loaded.
public struct MetaTensor: Sendable {
    /// Element type.
    public let dtype: DType
    /// Sizes per dimension.
    public let shape: [Int]
    /// Strides per dimension, in elements.
    public let strides: [Int]
    /// `requires_grad` as saved.
    public var requiresGrad: Bool
    /// True when the file saved an `nn.Parameter` around it.
    public var isParameter = false

    /// A meta tensor, checked as `torch.empty_strided` checks its arguments.
    /// - Throws: `TensorError.badView` for a rank mismatch, a negative size or stride, or
    ///   `requires_grad` on a dtype that cannot require gradients.
    public init(dtype: DType, shape: [Int], strides: [Int], requiresGrad: Bool) throws {
        guard shape.count == strides.count else { throw TensorError.badView("rank mismatch: \(shape.count) sizes, \(strides.count) strides") }
        guard shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.badView("negative size or stride in \(shape) / \(strides)")
        }
        guard Checked.product(shape) != nil else { throw TensorError.overflow("element count of shape \(shape)") }
        guard !requiresGrad || dtype.isFloatingPoint || dtype.isComplex else {
            throw TensorError.badView("only tensors of floating point and complex dtype can require gradients, got \(dtype.rawValue)")
        }
        self.dtype = dtype
        self.shape = shape
        self.strides = strides
        self.requiresGrad = requiresGrad
    }

    /// One line for reports: `meta float32 [2, 3]`.
    public var summary: String { "meta \(dtype.rawValue) [\(shape.map(String.init).joined(separator: ", "))]" }
}
