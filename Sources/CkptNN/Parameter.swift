import CkptKernels
import CkptTensor

/// One learnable tensor or buffer of a module, held by reference so that a module listed in
/// several places (SegNet's repeated triples) shares it, exactly as PyTorch shares the storage.
///
/// Values are always kept as float32 for compute; `dtype` is what a state dict exports.
public final class Parameter {
    /// The current values.
    public var value: DenseTensor {
        didSet { version &+= 1 }
    }
    /// Parameter or buffer.
    public let role: ParameterRole
    /// dtype of the exported tensor.
    public let dtype: DType
    /// Counts assignments, so caches derived from the value (folded BN weights) know when to refresh.
    public private(set) var version = 0
    /// False to freeze the parameter (`requires_grad_(False)`); buffers are never trainable.
    public var requiresGrad: Bool

    /// A parameter holding `value`.
    public init(_ value: DenseTensor, role: ParameterRole = .parameter, dtype: DType = .float32) {
        self.value = value
        self.role = role
        self.dtype = dtype
        self.requiresGrad = role == .parameter
    }

    /// The value as a checkpoint tensor of `dtype` (float32, or int64 for counters).
    /// - Throws: `TensorError` only for impossible shapes.
    public func exportedTensor() throws -> Tensor {
        switch dtype {
        case .int64:
            var bytes: [UInt8] = []
            bytes.reserveCapacity(value.count * 8)
            for v in value.values {
                withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) }
            }
            return try Tensor(dtype: .int64, shape: value.shape, bytes: bytes)
        default:
            return try value.tensor()
        }
    }
}
