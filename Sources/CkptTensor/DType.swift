/// A tensor element type, named as torch names it (`str(torch.float32)` without the `torch.` prefix).
///
/// The raw value is torch's canonical dtype name, which is also the GLOBAL name torch pickles
/// (`torch float32`). PyTorch counterpart: `torch.dtype`.
public enum DType: String, CaseIterable, Sendable, Hashable, Codable {
    case float64, float32, float16, bfloat16
    case int64, int32, int16, int8
    case uint8, uint16, uint32, uint64
    case bool
    case complex64, complex128, complex32
    case float8_e4m3fn, float8_e5m2, float8_e4m3fnuz, float8_e5m2fnuz, float8_e8m0fnu
    /// Quantized integer types: each element is an integer `q` standing for `(q - zero_point) * scale`
    /// (`Tensor.quantization` holds the scale and zero point). `quint4x2`/`quint2x4` pack two or
    /// four elements per byte.
    case qint8, quint8, qint32, quint4x2, quint2x4
    /// Opaque or packed types ckpt keeps as raw bytes: two 4-bit floats per byte
    /// (`float4_e2m1fn_x2`, whose shape counts bytes) and torch's untyped bit containers.
    case float4_e2m1fn_x2, bits8, bits16, bits1x8, bits2x4, bits4x2

    /// Bytes per element (`torch.tensor([], dtype=d).element_size()`).
    public var itemSize: Int {
        switch self {
        case .float64, .int64, .uint64, .complex64: return 8
        case .float32, .int32, .uint32, .complex32: return 4
        case .float16, .bfloat16, .int16, .uint16: return 2
        case .int8, .uint8, .bool, .qint8, .quint8, .quint4x2, .quint2x4: return 1
        case .float4_e2m1fn_x2, .bits8, .bits1x8, .bits2x4, .bits4x2: return 1
        case .bits16: return 2
        case .qint32: return 4
        case .complex128: return 16
        case .float8_e4m3fn, .float8_e5m2, .float8_e4m3fnuz, .float8_e5m2fnuz, .float8_e8m0fnu: return 1
        }
    }

    /// True for real floating types (`torch.is_floating_point`), float8 included.
    public var isFloatingPoint: Bool {
        switch self {
        case .float64, .float32, .float16, .bfloat16,
             .float8_e4m3fn, .float8_e5m2, .float8_e4m3fnuz, .float8_e5m2fnuz, .float8_e8m0fnu, .float4_e2m1fn_x2:
            return true
        default: return false
        }
    }

    /// True for quantized types (`torch.Tensor.is_quantized`).
    public var isQuantized: Bool {
        switch self {
        case .qint8, .quint8, .qint32, .quint4x2, .quint2x4: return true
        default: return false
        }
    }

    /// The plain integer type that holds a quantized type's stored integers (`int_repr()`'s dtype:
    /// qint8 → int8, quint8 → uint8, qint32 → int32), or nil (packed sub-byte types, and every
    /// type that is not quantized).
    public var quantizedStorageType: DType? {
        switch self {
        case .qint8: return .int8
        case .quint8: return .uint8
        case .qint32: return .int32
        default: return nil
        }
    }

    /// True for complex types (`torch.is_complex`).
    public var isComplex: Bool { self == .complex64 || self == .complex128 || self == .complex32 }

    /// True when ckpt can turn elements into numbers (`Double`) for statistics and diffs (quantized
    /// tensors read as their dequantized values; packed 4- and 2-bit ones cannot be read).
    public var isNumericallyReadable: Bool {
        switch self {
        case .float8_e4m3fn, .float8_e5m2, .float8_e4m3fnuz, .float8_e5m2fnuz, .float8_e8m0fnu, .complex32,
             .quint4x2, .quint2x4, .float4_e2m1fn_x2, .bits8, .bits16, .bits1x8, .bits2x4, .bits4x2:
            return false
        default: return true
        }
    }

    /// The legacy typed-storage class torch pickles for this dtype (`FloatStorage`), or nil for the
    /// dtypes written through `UntypedStorage` and `_rebuild_tensor_v3`.
    public var storageClassName: String? {
        switch self {
        case .float64: return "DoubleStorage"
        case .float32: return "FloatStorage"
        case .float16: return "HalfStorage"
        case .bfloat16: return "BFloat16Storage"
        case .int64: return "LongStorage"
        case .int32: return "IntStorage"
        case .int16: return "ShortStorage"
        case .int8: return "CharStorage"
        case .uint8: return "ByteStorage"
        case .bool: return "BoolStorage"
        case .complex64: return "ComplexFloatStorage"
        case .complex128: return "ComplexDoubleStorage"
        case .qint8: return "QInt8Storage"
        case .quint8: return "QUInt8Storage"
        case .qint32: return "QInt32Storage"
        case .quint4x2: return "QUInt4x2Storage"
        case .quint2x4: return "QUInt2x4Storage"
        default: return nil
        }
    }

    /// The dtype of a legacy storage class name (`FloatStorage` → float32), or nil.
    public init?(storageClassName name: String) {
        guard let d = DType.allCases.first(where: { $0.storageClassName == name }) else { return nil }
        self = d
    }

    /// The legacy tensor class name (`FloatTensor`) torch 0.x used, or nil.
    public init?(legacyTensorClassName name: String) {
        guard name.hasSuffix("Tensor") else { return nil }
        let base = String(name.dropLast("Tensor".count))
        self.init(storageClassName: base + "Storage")
    }

    /// The safetensors dtype code (`F32`), or nil when safetensors cannot hold this dtype.
    public var safetensorsCode: String? {
        switch self {
        case .float64: return "F64"
        case .float32: return "F32"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .int64: return "I64"
        case .int32: return "I32"
        case .int16: return "I16"
        case .int8: return "I8"
        case .uint8: return "U8"
        case .uint16: return "U16"
        case .uint32: return "U32"
        case .uint64: return "U64"
        case .bool: return "BOOL"
        case .complex64: return "C64"
        case .float8_e4m3fn: return "F8_E4M3"
        case .float8_e5m2: return "F8_E5M2"
        case .float8_e4m3fnuz: return "F8_E4M3FNUZ"
        case .float8_e5m2fnuz: return "F8_E5M2FNUZ"
        case .float8_e8m0fnu: return "F8_E8M0"
        case .complex128, .complex32, .qint8, .quint8, .qint32, .quint4x2, .quint2x4,
             .float4_e2m1fn_x2, .bits8, .bits16, .bits1x8, .bits2x4, .bits4x2: return nil
        }
    }

    /// The dtype of a safetensors code (`F32` → float32), or nil for unknown codes.
    public init?(safetensorsCode code: String) {
        guard let d = DType.allCases.first(where: { $0.safetensorsCode == code }) else { return nil }
        self = d
    }
}
