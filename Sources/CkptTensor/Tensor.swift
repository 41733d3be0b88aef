/// A strided view over a `Storage`, exactly as torch describes a tensor: dtype, shape, strides
/// and storage offset in elements, plus the lazy conjugate/negate bits.
///
/// Creating a tensor touches no data; reading its elements loads the storage.
/// PyTorch counterpart: `torch.Tensor` as rebuilt by `torch._utils._rebuild_tensor_v2`.
public struct Tensor: Sendable {
    /// The shared storage the tensor views.
    public let storage: Storage
    /// Element type.
    public let dtype: DType
    /// Sizes per dimension (`[]` for a 0-dim tensor).
    public let shape: [Int]
    /// Strides per dimension, in elements.
    public let strides: [Int]
    /// Offset of element 0 in the storage, in elements of `dtype`.
    public let storageOffset: Int
    /// torch's lazy conjugate bit: the stored values are the conjugates of the tensor's.
    public let isConjugated: Bool
    /// torch's lazy negative bit: the stored values are the negations of the tensor's.
    public let isNegated: Bool
    /// `requires_grad` as saved.
    public var requiresGrad: Bool
    /// True when the file saved an `nn.Parameter` rather than a plain tensor.
    public var isParameter: Bool
    /// Number of elements (product of `shape`), checked at creation.
    public let elementCount: Int
    /// Scale and zero point(s) of a quantized tensor (`dtype.isQuantized`), nil otherwise.
    public var quantization: Quantization?

    /// A view, validated against the storage size with checked arithmetic.
    /// - Throws: `TensorError.badView` for negative sizes or strides, a rank mismatch, or a view
    ///   that reaches past the storage; `TensorError.overflow` when a size product overflows.
    public init(storage: Storage, dtype: DType, shape: [Int], strides: [Int], storageOffset: Int,
                isConjugated: Bool = false, isNegated: Bool = false,
                requiresGrad: Bool = false, isParameter: Bool = false) throws {
        guard shape.count == strides.count else {
            throw TensorError.badView("rank mismatch: \(shape.count) sizes, \(strides.count) strides")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw TensorError.badView("negative size in \(shape)") }
        guard strides.allSatisfy({ $0 >= 0 }) else { throw TensorError.badView("negative stride in \(strides)") }
        guard storageOffset >= 0 else { throw TensorError.badView("negative storage offset \(storageOffset)") }
        guard let n = Checked.product(shape) else { throw TensorError.overflow("element count of shape \(shape)") }
        if n > 0 {
            // last element index = offset + Σ (size-1)·stride, must lie inside the storage
            var last = storageOffset
            for (s, st) in zip(shape, strides) {
                guard let t = Checked.mul(s - 1, st), let u = Checked.add(last, t) else {
                    throw TensorError.overflow("extent of shape \(shape) strides \(strides)")
                }
                last = u
            }
            guard let end = Checked.add(last, 1), let endBytes = Checked.mul(end, dtype.itemSize) else {
                throw TensorError.overflow("extent of shape \(shape) strides \(strides)")
            }
            guard endBytes <= storage.byteCount else {
                throw TensorError.badView("view of shape \(shape) strides \(strides) offset \(storageOffset) needs \(endBytes) bytes, storage \(storage.key) has \(storage.byteCount)")
            }
        }
        self.storage = storage
        self.dtype = dtype
        self.shape = shape
        self.strides = strides
        self.storageOffset = storageOffset
        self.isConjugated = isConjugated && dtype.isComplex
        self.isNegated = isNegated
        self.requiresGrad = requiresGrad
        self.isParameter = isParameter
        self.elementCount = n
    }

    /// A contiguous little-endian tensor holding a copy of `bytes`.
    /// - Throws: `TensorError.badView` when the byte count does not match the shape.
    public init(dtype: DType, shape: [Int], bytes: [UInt8], key: String = "0") throws {
        let storage = Storage(key: key, dtype: dtype, bytes: bytes)
        guard let n = Checked.product(shape), n * dtype.itemSize == bytes.count else {
            throw TensorError.badView("\(bytes.count) bytes do not hold shape \(shape) of \(dtype.rawValue)")
        }
        try self.init(storage: storage, dtype: dtype, shape: shape, strides: Tensor.contiguousStrides(shape), storageOffset: 0)
    }

    /// A contiguous float32 tensor holding `values`.
    public init(float32 values: [Float], shape: [Int]) throws {
        // one copy, straight into the storage's region
        let region = values.withUnsafeBytes { ByteRegion(copying: $0) }
        guard let n = Checked.product(shape), n == values.count else {
            throw TensorError.badView("\(values.count) floats do not hold shape \(shape)")
        }
        let storage = Storage(key: "0", dtype: .float32, slice: ByteSlice(region: region))
        try self.init(storage: storage, dtype: .float32, shape: shape, strides: Tensor.contiguousStrides(shape), storageOffset: 0)
    }

    /// Row-major strides for `shape` (`torch.empty(shape).stride()`).
    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = acc
            acc = acc &* max(shape[i], 1)
        }
        return strides
    }

    /// Bytes the tensor's elements take when contiguous (`numel * element_size`).
    public var byteCount: Int { elementCount &* dtype.itemSize }

    /// True when the elements are laid out row-major without gaps (`is_contiguous()`; size-1
    /// dimensions are ignored, as torch ignores them).
    public var isContiguous: Bool {
        if elementCount == 0 { return true }
        var expected = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) where shape[i] != 1 {
            if strides[i] != expected { return false }
            expected &*= shape[i]
        }
        return true
    }

    /// True when the tensor is contiguous, little-endian and carries no lazy bits, so its bytes
    /// can be used in place.
    public var isPlainContiguous: Bool {
        isContiguous && !isConjugated && !isNegated && storage.byteOrder == .little
    }

    /// True when the view covers the whole storage exactly, in order.
    public var coversWholeStorage: Bool {
        isContiguous && storageOffset == 0 && byteCount == storage.byteCount
    }

    /// Largest logical size ckpt will materialise for a view whose storage is much smaller
    /// (stride-0 expands): beyond this, and beyond 64× the storage, reading is refused.
    public static let maxExpandedBytes = 1 << 30

    /// Throws when materialising the view would allocate far more than its storage holds.
    /// - Throws: `TensorError.tooLarge` for a view over `maxExpandedBytes` and over 64× its storage.
    public func checkMaterializable() throws {
        let limit = max(Tensor.maxExpandedBytes, storage.byteCount.multipliedReportingOverflow(by: 64).partialValue)
        guard let b = Checked.mul(elementCount, dtype.itemSize), b <= limit else {
            throw TensorError.tooLarge("shape \(shape) of \(dtype.rawValue) expands storage \(storage.key) of \(storage.byteCount) bytes")
        }
    }
}
