/// A state dict: tensors under PyTorch keys, in order (`model.state_dict()`, an `OrderedDict`).
///
/// Keys are compared by their Unicode scalars, as Python compares `str` keys: two keys that
/// Swift's `String ==` would call equal (NFC and NFD forms of `café`) stay two entries.
/// When a key is given twice the last value wins, as a Python dict assignment does.
public struct StateDict: Sendable, RandomAccessCollection {
    /// One entry.
    public typealias Element = (key: String, tensor: Tensor)

    /// The entries in order.
    public private(set) var entries: [Element] = []
    private var positions: [ExactKey: Int] = [:]

    /// An empty state dict.
    public init() {}

    /// The entries in order; a repeated key keeps its first position and its last value.
    public init<S: Sequence>(_ entries: S) where S.Element == Element {
        for e in entries { self[e.key] = e.tensor }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { entries.count }
    public subscript(position: Int) -> Element { entries[position] }

    /// The tensor under `key`, or nil; setting appends a new key or replaces the value in place.
    public subscript(key: String) -> Tensor? {
        get { positions[ExactKey(key)].map { entries[$0].tensor } }
        set {
            let k = ExactKey(key)
            if let i = positions[k] {
                if let t = newValue {
                    entries[i].tensor = t
                } else {
                    entries.remove(at: i)
                    positions = [:]
                    for (j, e) in entries.enumerated() { positions[ExactKey(e.key)] = j }
                }
            } else if let t = newValue {
                positions[k] = entries.count
                entries.append((key, t))
            }
        }
    }

    /// True when `key` is present.
    public func contains(_ key: String) -> Bool { positions[ExactKey(key)] != nil }

    /// Position of `key` in the order, or nil.
    public func position(of key: String) -> Int? { positions[ExactKey(key)] }

    /// The keys in order.
    public var keys: [String] { entries.map(\.key) }

    /// Keys and shapes, for planning without data.
    public var shapes: [(key: String, shape: [Int])] { entries.map { ($0.key, $0.tensor.shape) } }

    /// Every key with `prefix` removed where it has it (a `module.` wrapper).
    public func removingPrefix(_ prefix: String) -> StateDict {
        StateDict(entries.map { e in (e.key.hasPrefix(prefix) ? String(e.key.dropFirst(prefix.count)) : e.key, e.tensor) })
    }

    /// The module path of a key: everything before its last dot (`layer1.0.bn1`).
    public static func modulePath(of key: String) -> String {
        guard let dot = key.lastIndex(of: ".") else { return "" }
        return String(key[..<dot])
    }

    /// The last component of a key (`running_mean`).
    public static func leafName(of key: String) -> String {
        guard let dot = key.lastIndex(of: ".") else { return key }
        return String(key[key.index(after: dot)...])
    }
}

/// A string compared and hashed by its Unicode scalars (Python's `str` equality), not by
/// Swift's canonical equivalence.
public struct ExactKey: Hashable, Sendable {
    /// The string.
    public let string: String
    /// Wraps `string`.
    public init(_ string: String) { self.string = string }

    public static func == (a: ExactKey, b: ExactKey) -> Bool {
        a.string.unicodeScalars.elementsEqual(b.string.unicodeScalars)
    }

    public func hash(into hasher: inout Hasher) {
        for s in string.unicodeScalars { hasher.combine(s.value) }
    }
}
