import CkptTensor

/// The globals torch 2.15's `weights_only` unpickler accepts by default (144 names), as data.
/// ckpt accepts exactly these by exact `(module, name)` string match: no import, no attribute
/// traversal, no normalisation. Everything else is refused, or kept inert under salvage.
public enum Allowlist {
    private static let storageBases = ["Double", "Float", "Half", "BFloat16", "Long", "Int", "Short",
                                       "Char", "Byte", "Bool", "ComplexFloat", "ComplexDouble"]
    private static let tensorBases = ["Double", "Float", "Half", "BFloat16", "Long", "Int", "Short",
                                      "Char", "Byte", "Bool"]
    private static let sparseBases = ["BFloat16", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short"]
    private static let dtypeNames = [
        "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64", "bool", "complex32", "complex64", "complex128",
        "bcomplex32", "qint8", "qint32", "quint8", "quint4x2", "quint2x4", "float8_e4m3fn",
        "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
        "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
    ] + (1 ... 7).map { "int\($0)" } + (1 ... 7).map { "uint\($0)" }

    /// The full set.
    public static let names: Set<QualifiedName> = {
        var s: Set<QualifiedName> = [
            QualifiedName("collections", "OrderedDict"), QualifiedName("collections", "Counter"),
            QualifiedName("builtins", "set"), QualifiedName("builtins", "bytearray"),
            QualifiedName("builtins", "complex"), QualifiedName("_codecs", "encode"),
            QualifiedName("torch", "Size"), QualifiedName("torch", "Tensor"), QualifiedName("torch", "device"),
            QualifiedName("torch.nn.parameter", "Parameter"),
            QualifiedName("torch.serialization", "_get_layout"),
            QualifiedName("torch._tensor", "_rebuild_from_type_v2"),
            QualifiedName("torch.storage", "TypedStorage"), QualifiedName("torch.storage", "UntypedStorage"),
        ]
        for f in ["_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                  "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor",
                  "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass",
                  "_rebuild_device_tensor_from_cpu_tensor", "_rebuild_device_tensor_from_numpy"] {
            s.insert(QualifiedName("torch._utils", f))
        }
        for b in storageBases {
            s.insert(QualifiedName("torch", b + "Storage"))
            s.insert(QualifiedName("torch.cuda", b + "Storage"))
        }
        for b in ["QInt8", "QInt32", "QUInt8", "QUInt4x2", "QUInt2x4"] { s.insert(QualifiedName("torch", b + "Storage")) }
        for b in tensorBases {
            s.insert(QualifiedName("torch", b + "Tensor"))
            s.insert(QualifiedName("torch.cuda", b + "Tensor"))
        }
        for b in sparseBases {
            s.insert(QualifiedName("torch.sparse", b + "Tensor"))
            s.insert(QualifiedName("torch.cuda.sparse", b + "Tensor"))
        }
        for d in dtypeNames { s.insert(QualifiedName("torch", d)) }
        for q in ["per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
                  "per_channel_symmetric", "per_channel_affine_float_qparams"] {
            s.insert(QualifiedName("torch", q))
        }
        return s
    }()

    /// True when torch's default `weights_only` loader accepts `name`.
    public static func contains(_ name: QualifiedName) -> Bool { names.contains(name) }

    /// Python 2 module names pickle maps to their Python 3 homes (`_compat_pickle.IMPORT_MAPPING`,
    /// the part that can matter for checkpoints).
    static func python3Name(_ n: QualifiedName) -> QualifiedName {
        switch n.module {
        case "__builtin__": return QualifiedName("builtins", n.name)
        case "copy_reg": return QualifiedName("copyreg", n.name)
        default: return n
        }
    }
}
