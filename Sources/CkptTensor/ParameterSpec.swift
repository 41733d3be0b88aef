/// Whether a state-dict entry is a trainable parameter or a buffer (`register_buffer`).
public enum ParameterRole: String, Sendable, Hashable, Codable {
    /// An `nn.Parameter`: trained by the optimiser.
    case parameter
    /// A buffer such as `running_mean` or `num_batches_tracked`: saved, never trained.
    case buffer
}

/// The contract of one state-dict entry: what key, shape and dtype a model expects there.
///
/// The common language of surgery, models and files: `CkptSurgery` plans on `[ParameterSpec]`
/// without ever seeing a model. PyTorch counterpart: one item of `model.state_dict()` seen
/// through its key, `shape`, `dtype`, and membership in `named_parameters()`.
public struct ParameterSpec: Sendable, Hashable, Codable {
    /// The PyTorch key (`layer1.0.bn1.running_mean`).
    public var key: String
    /// Expected shape.
    public var shape: [Int]
    /// dtype PyTorch stores it in (`float32`, or `int64` for `num_batches_tracked`).
    public var dtype: DType
    /// Parameter or buffer.
    public var role: ParameterRole

    /// A spec for `key`.
    public init(key: String, shape: [Int], dtype: DType, role: ParameterRole) {
        self.key = key
        self.shape = shape
        self.dtype = dtype
        self.role = role
    }

    /// Number of elements.
    public var elementCount: Int { shape.reduce(1, *) }

    /// Bytes of the entry in its dtype.
    public var byteCount: Int { elementCount * dtype.itemSize }

    /// The dotted path of the module that owns the entry (`layer1.0.bn1`; `""` at the top).
    public var modulePath: String { StateDict.modulePath(of: key) }

    /// The entry's own name within its module (`running_mean`).
    public var name: String { StateDict.leafName(of: key) }
}
