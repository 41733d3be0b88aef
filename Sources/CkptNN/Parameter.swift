import CkptKernels
import CkptTensor

/// One learnable tensor or buffer of a module, held by reference so that a module listed in
/// several places (SegNet's repeated triples) shares it, exactly as PyTorch shares the storage.
///
/// Values are always kept as float32 for compute; `dtype` is what a state dict exports.
public final class Parameter {
    /// The current values.
    public var value: DenseTensor {
        get { storage }
        set {
            storage = newValue
            version &+= 1
        }
        // in place (an optimizer's update): an observer would copy the whole tensor first
        _modify {
            yield &storage
            version &+= 1
        }
    }
    private var storage: DenseTensor
    /// Parameter or buffer.
    public let role: ParameterRole
    /// dtype of the exported tensor.
    public let dtype: DType
    /// Counts assignments, so caches derived from the value (folded BN weights) know when to refresh.
    public private(set) var version = 0
    /// False to freeze the parameter (`requires_grad_(False)`); buffers are never trainable.
    public var requiresGrad: Bool
    /// The gradient accumulated by backward passes since the last `zeroGradient()` (`.grad`):
    /// nil until a backward reaches the parameter, then the sum over every use (a shared module
    /// adds once per call), shaped as `value`.
    public private(set) var gradient: DenseTensor?

    /// A parameter holding `value`.
    public init(_ value: DenseTensor, role: ParameterRole = .parameter, dtype: DType = .float32) {
        self.storage = value
        self.role = role
        self.dtype = dtype
        self.requiresGrad = role == .parameter
    }

    /// Adds `delta` (shaped as `value`) into the gradient; the first use stores it.
    /// - Throws: `KernelError.shapeMismatch` when the shape differs from the value's.
    public func accumulateGradient(_ delta: consuming DenseTensor) throws {
        guard delta.shape == value.shape else {
            throw KernelError.shapeMismatch(operation: "gradient", operand: "gradient", expected: "\(value.shape)", got: delta.shape)
        }
        if gradient == nil {
            gradient = delta
            return
        }
        gradient!.values.withUnsafeMutableBufferPointer { g in
            delta.values.withUnsafeBufferPointer { d in
                for i in 0 ..< g.count { g[i] += d[i] }
            }
        }
    }

    /// Forgets the gradient (`zero_grad(set_to_none=True)`, torch's default).
    public func zeroGradient() { gradient = nil }

    /// Replaces the gradient (optimizer tests and state restored from a file).
    /// - Throws: `KernelError.shapeMismatch` when the shape differs from the value's.
    public func setGradient(_ g: DenseTensor?) throws {
        if let g, g.shape != value.shape {
            throw KernelError.shapeMismatch(operation: "gradient", operand: "gradient", expected: "\(value.shape)", got: g.shape)
        }
        gradient = g
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
