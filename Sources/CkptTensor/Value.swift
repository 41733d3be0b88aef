/// A fully qualified Python name as a pickle GLOBAL names it (`torch._utils._rebuild_tensor_v2`).
public struct QualifiedName: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Module part (`torch._utils`).
    public let module: String
    /// Attribute part (`_rebuild_tensor_v2`).
    public let name: String

    /// A name from its two GLOBAL lines.
    public init(_ module: String, _ name: String) {
        self.module = module
        self.name = name
    }

    /// `module.name`, as Python prints it.
    public var description: String { module + "." + name }

    public static func < (a: QualifiedName, b: QualifiedName) -> Bool { a.description < b.description }
}

/// The kind of a Python mapping in a checkpoint.
public enum DictKind: String, Sendable {
    /// A plain `dict`.
    case dict
    /// `collections.OrderedDict` (what `state_dict()` returns).
    case orderedDict = "OrderedDict"
    /// `collections.Counter`.
    case counter = "Counter"
}

/// A Python mapping, order kept, with the attributes a BUILD set on it (`_metadata`).
public struct PyDict: Sendable {
    /// The items in insertion order.
    public var items: [(key: Value, value: Value)]
    /// `dict`, `OrderedDict` or `Counter`.
    public var kind: DictKind
    /// Instance attributes set by BUILD (`state_dict()._metadata`), in order.
    public var attributes: [(name: String, value: Value)]

    /// A mapping of the given kind.
    public init(items: [(key: Value, value: Value)] = [], kind: DictKind = .dict, attributes: [(name: String, value: Value)] = []) {
        self.items = items
        self.kind = kind
        self.attributes = attributes
    }

    /// The value stored under string key `key`, if any.
    public subscript(key: String) -> Value? {
        items.first(where: { $0.key.stringValue == key })?.value
    }

    /// The attribute `name` set by BUILD, if any.
    public func attribute(_ name: String) -> Value? {
        attributes.first(where: { $0.name == name })?.value
    }
}

/// An object ckpt kept without understanding it: a call of, or an instance of, a class outside the
/// allowlist (`argparse.Namespace`, a pickled `nn.Module`). Nothing about it was ever run.
public struct OpaqueObject: Sendable {
    /// How the pickle built it.
    public enum Construction: String, Sendable {
        /// `REDUCE`: the global was called with `arguments`.
        case call
        /// `NEWOBJ`/`NEWOBJ_EX`: `cls.__new__(cls, *arguments)`.
        case new
        /// The global itself, never called.
        case reference
    }
    /// The class or function the pickle named.
    public var global: QualifiedName
    /// How it was built.
    public var construction: Construction
    /// Positional arguments.
    public var arguments: [Value]
    /// State applied by BUILD, if any (usually the instance `__dict__`).
    public var state: Value?

    /// An opaque node.
    public init(global: QualifiedName, construction: Construction, arguments: [Value] = [], state: Value? = nil) {
        self.global = global
        self.construction = construction
        self.arguments = arguments
        self.state = state
    }
}

/// One value of a checkpoint's object tree, as the restricted unpickler rebuilt it: Python
/// scalars and containers, tensors, and inert opaque objects.
public indirect enum Value: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer outside the 64-bit range, as decimal text.
    case bigInt(String)
    case float(Double)
    case complex(Double, Double)
    case string(String)
    case bytes([UInt8])
    case tuple([Value])
    case list([Value])
    case set([Value])
    case dict(PyDict)
    case tensor(Tensor)
    /// A sparse tensor (COO, CSR, CSC, BSR, BSC): its index and value tensors and its size.
    case sparse(SparseTensor)
    /// A tensor saved from the meta device: dtype, shape and strides, no values.
    case meta(MetaTensor)
    /// A bare storage object (`tensor.untyped_storage()` pickled on its own).
    case storage(Storage)
    /// A `torch.dtype` (`torch.float32`).
    case dtype(DType)
    /// A `torch.device` (`cpu`, `cuda:0`).
    case device(String)
    /// A global referenced as a value (`torch.per_tensor_affine`, a class object).
    case global(QualifiedName)
    case object(OpaqueObject)
    /// A reference back to the enclosing container at this dotted path (`''` for the root): the
    /// pickle built a reference cycle (a dict that contains itself, OmegaConf's parent links),
    /// which a tree cannot hold and a walk never follows.
    case reference(String)

    /// The string when this is `.string`.
    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    /// The integer when this is `.int` (or a bool, as Python treats it).
    public var intValue: Int? {
        switch self {
        case let .int(i): return i
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    /// The tensor when this is `.tensor`.
    public var tensorValue: Tensor? {
        if case let .tensor(t) = self { return t }
        return nil
    }

    /// The mapping when this is `.dict`.
    public var dictValue: PyDict? {
        if case let .dict(d) = self { return d }
        return nil
    }

    /// Elements when this is a tuple or a list.
    public var sequenceValue: [Value]? {
        switch self {
        case let .tuple(a), let .list(a): return a
        default: return nil
        }
    }

    /// True for a number, bool, string, bytes or None: a value with no parts.
    public var isScalar: Bool {
        switch self {
        case .none, .bool, .int, .bigInt, .float, .complex, .string, .bytes: return true
        default: return false
        }
    }

    /// The Python type name (`dict`, `int`, `Tensor`), for reports.
    public var typeName: String {
        switch self {
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .complex: return "complex"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .set: return "set"
        case let .dict(d): return d.kind.rawValue
        case let .tensor(t): return t.isParameter ? "Parameter" : "Tensor"
        case let .sparse(t): return t.isParameter ? "Parameter" : "Tensor"
        case let .meta(t): return t.isParameter ? "Parameter" : "Tensor"
        case .storage: return "Storage"
        case .dtype: return "dtype"
        case .device: return "device"
        case let .global(g): return g.description
        case let .object(o): return o.global.description
        case .reference: return "reference"
        }
    }

    /// How a dict key or sequence index reads inside a dotted path (`'conv1'`, `0`, `3`).
    public var pathComponent: String {
        switch self {
        case let .string(s): return s
        case let .int(i): return String(i)
        case let .bigInt(s): return s
        case let .bool(b): return b ? "True" : "False"
        case .none: return "None"
        case let .float(f): return String(f)
        case let .bytes(b): return String(decoding: b, as: UTF8.self)
        case let .tuple(a): return "(" + a.map(\.pathComponent).joined(separator: ", ") + ")"
        default: return "<\(typeName)>"
        }
    }
}
