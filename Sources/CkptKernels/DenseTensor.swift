import CkptTensor

// Shapes follow PyTorch's NCHW layout: N images in a batch, C channels, H rows, W columns.

/// A contiguous row-major float32 array with a shape: the operand every kernel reads and writes.
///
/// Unlike `CkptTensor.Tensor` (a strided view over a possibly mapped storage of any dtype), this
/// owns its values and is always dense, so kernels can hand its memory straight to BLAS.
/// PyTorch counterpart: a contiguous `torch.float32` CPU tensor.
public struct DenseTensor: Sendable, Equatable {
    /// Sizes per dimension, outermost first.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `values.count` is the product of `shape`.
    public var values: [Float]

    /// A tensor holding `values` under `shape`.
    /// - Throws: `KernelError.invalidArgument` when the count does not match the shape.
    public init(shape: [Int], values: [Float]) throws {
        guard shape.allSatisfy({ $0 >= 0 }), let n = Checked.product(shape), n == values.count else {
            throw KernelError.invalidArgument(operation: "tensor", message: "\(values.count) values do not fill shape \(shape)")
        }
        self.shape = shape
        self.values = values
    }

    /// A tensor of `shape` filled with `value` (zeros by default); negative sizes count as 0.
    public init(shape: [Int], repeating value: Float = 0) {
        let dims = shape.map { max($0, 0) }
        self.shape = dims
        self.values = [Float](repeating: value, count: dims.reduce(1, *))
    }

    /// A shape with no values, for specification-only models (`Zoo.specification`) that are
    /// listed and thrown away: no kernel may ever see one.
    package init(placeholderShape shape: [Int]) {
        self.shape = shape.map { max($0, 0) }
        self.values = []
    }

    /// Builds the tensor without checking; callers inside the module have computed `shape`.
    init(uncheckedShape shape: [Int], values: [Float]) {
        self.shape = shape
        self.values = values
    }

    /// The float32 elements of a checkpoint tensor (converted as `t.float()` would).
    /// - Throws: `TensorError` when the tensor cannot be read as float32.
    public init(_ tensor: Tensor) throws {
        self.shape = tensor.shape
        self.values = try tensor.floats()
    }

    /// Number of elements.
    public var count: Int { values.count }

    /// Number of dimensions.
    public var rank: Int { shape.count }

    /// The same values under another shape of equal element count (`torch.reshape`).
    /// - Throws: `KernelError.invalidArgument` when the counts differ.
    public func reshaped(_ newShape: [Int]) throws -> DenseTensor {
        try DenseTensor(shape: newShape, values: values)
    }

    /// A contiguous float32 `CkptTensor.Tensor` holding a copy of the values.
    /// - Throws: `TensorError` only when the shape overflows (it cannot for a valid tensor).
    public func tensor() throws -> Tensor {
        try Tensor(float32: values, shape: shape)
    }

    /// The four sizes of an NCHW tensor.
    /// - Throws: `KernelError.shapeMismatch` naming `operation` when the rank is not 4.
    public func nchw(for operation: String) throws -> (n: Int, c: Int, h: Int, w: Int) {
        guard shape.count == 4 else {
            throw KernelError.shapeMismatch(operation: operation, operand: "input", expected: "[N, C, H, W]", got: shape)
        }
        return (shape[0], shape[1], shape[2], shape[3])
    }

    /// Largest absolute element (0 for an empty tensor); NaN when any element is NaN.
    public var maxMagnitude: Float {
        var m: Float = 0
        for v in values {
            if v.isNaN { return .nan }
            m = max(m, abs(v))
        }
        return m
    }
}

extension Array where Element == Float {
    /// An array of `count` floats whose contents are unspecified: for buffers a kernel
    /// overwrites entirely, so the zero-fill (and its page faults) is skipped.
    static func uninitialized(_ count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }
}
