import CkptKernels
import CkptTensor

/// Which misfits a state-dict load tolerates. The empty set is PyTorch's `strict=True`;
/// `.lenient` is `strict=False` plus skipping shape mismatches instead of failing.
public struct LoadStrictness: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    /// A strictness from its bits.
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// Model keys absent from the state dict keep their current values.
    public static let allowMissing = LoadStrictness(rawValue: 1)
    /// State-dict keys the model does not have are ignored.
    public static let allowUnexpected = LoadStrictness(rawValue: 2)
    /// Keys whose shapes differ are skipped (left as they were).
    public static let allowShapeMismatch = LoadStrictness(rawValue: 4)
    /// Every key must match in name and shape (`load_state_dict(strict=True)`).
    public static let strict: LoadStrictness = []
    /// Load whatever fits and report the rest.
    public static let lenient: LoadStrictness = [.allowMissing, .allowUnexpected, .allowShapeMismatch]
}

/// What a state-dict load found, key by key: reported in one value, never thrown one by one.
///
/// PyTorch counterpart: the `_IncompatibleKeys` of `load_state_dict`, plus the shape mismatches
/// torch raises as errors, each with both shapes.
public struct LoadReport: Sendable {
    /// A key present on both sides with different shapes.
    public struct ShapeMismatch: Sendable, Hashable {
        /// The state-dict key.
        public var key: String
        /// Shape the model expects.
        public var expected: [Int]
        /// Shape the state dict holds.
        public var got: [Int]
        /// A mismatch of `key`: the model expects `expected`, the state dict holds `got`.
        public init(key: String, expected: [Int], got: [Int]) {
            self.key = key
            self.expected = expected
            self.got = got
        }
    }
    /// A state-dict key the model does not have.
    public struct Unexpected: Sendable, Hashable {
        /// The key.
        public var key: String
        /// Its shape in the state dict.
        public var shape: [Int]
        /// An unexpected `key` of `shape`.
        public init(key: String, shape: [Int]) {
            self.key = key
            self.shape = shape
        }
    }
    /// A tensor whose dtype could not be read as float32 (complex, float8).
    public struct Unreadable: Sendable, Hashable {
        /// The key.
        public var key: String
        /// Its dtype.
        public var dtype: DType
        /// An unreadable `key` of `dtype`.
        public init(key: String, dtype: DType) {
            self.key = key
            self.dtype = dtype
        }
    }

    /// Keys whose values were loaded.
    public var loaded: [String] = []
    /// Model entries the state dict lacks.
    public var missing: [ParameterSpec] = []
    /// State-dict entries the model lacks.
    public var unexpected: [Unexpected] = []
    /// Entries on both sides whose shapes differ.
    public var mismatched: [ShapeMismatch] = []
    /// Entries whose dtype cannot become float32.
    public var unreadable: [Unreadable] = []
    /// Loaded keys stored in a dtype other than the model's, converted on load (`float16` → `float32`).
    public var converted: [(key: String, from: DType)] = []
    /// Groups of keys naming one shared parameter whose state-dict values differ; the last key won.
    public var sharedConflicts: [[String]] = []
    /// Groups of keys that name one shared parameter in the model.
    public var sharedGroups: [[String]] = []

    /// True when every key matched in name and shape.
    public var isExact: Bool { missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty && unreadable.isEmpty }

    /// True when the report contains nothing `strictness` forbids.
    public func isAcceptable(under strictness: LoadStrictness) -> Bool {
        unreadable.isEmpty
            && (missing.isEmpty || strictness.contains(.allowMissing))
            && (unexpected.isEmpty || strictness.contains(.allowUnexpected))
            && (mismatched.isEmpty || strictness.contains(.allowShapeMismatch))
    }

    /// The problems as one line: counts, then the first few keys with both shapes.
    public var problemSummary: String {
        var parts: [String] = []
        func list(_ items: [String]) -> String {
            items.prefix(5).joined(separator: ", ") + (items.count > 5 ? ", … (\(items.count) in all)" : "")
        }
        if !mismatched.isEmpty {
            parts.append("\(mismatched.count) shape mismatch(es): "
                + list(mismatched.map { "\($0.key) model \($0.expected) checkpoint \($0.got)" }))
        }
        if !missing.isEmpty { parts.append("\(missing.count) missing key(s): " + list(missing.map(\.key))) }
        if !unexpected.isEmpty { parts.append("\(unexpected.count) unexpected key(s): " + list(unexpected.map(\.key))) }
        if !unreadable.isEmpty {
            parts.append("\(unreadable.count) unreadable tensor(s): " + list(unreadable.map { "\($0.key) (\($0.dtype.rawValue))" })
                + (unreadable.contains { $0.dtype.isQuantized } ? " (quantized weights do not load into a float model, as in torch)" : ""))
        }
        return parts.isEmpty ? "all keys match" : parts.joined(separator: "; ")
    }
}

extension Module {
    /// The state dict in PyTorch's `state_dict()` order, float32 parameters and int64 counters;
    /// shared parameters appear under each of their keys.
    /// - Throws: `TensorError` only for impossible shapes.
    public func stateDict() throws -> StateDict {
        StateDict(try namedParameters().map { ($0.key, try $0.parameter.exportedTensor()) })
    }

    /// Loads an array of entries; see `load(stateDict:strictness:)`.
    /// - Throws: as `load(stateDict:strictness:)`.
    @discardableResult
    public func load(stateDict: [(key: String, tensor: Tensor)], strictness: LoadStrictness = .strict) throws -> LoadReport {
        try load(stateDict: StateDict(stateDict), strictness: strictness)
    }

    /// Loads `stateDict` into the model (`load_state_dict`), checking everything before changing
    /// anything: under a strictness the report violates, the model is left untouched.
    ///
    /// Values of any readable dtype are converted to float32. Shared parameters take the value
    /// of their last key in `stateDict` order, as repeated `copy_` in PyTorch would.
    /// - Returns: the report of loaded, missing, unexpected, mismatched and converted keys.
    /// - Throws: `NNError.load(report)` when the report violates `strictness`; `TensorError`
    ///   when a storage cannot be read.
    @discardableResult
    public func load(stateDict: StateDict, strictness: LoadStrictness = .strict) throws -> LoadReport {
        let entries = namedParameters()
        var byKey: [String: Parameter] = [:]
        for (k, p) in entries { byKey[k] = p }

        var report = LoadReport()
        report.sharedGroups = sharedKeyGroups()
        for (k, p) in entries where !stateDict.contains(k) {
            report.missing.append(ParameterSpec(key: k, shape: p.value.shape, dtype: p.dtype, role: p.role))
        }
        var plan: [(key: String, tensor: Tensor, parameter: Parameter)] = []
        for (k, t) in stateDict {
            guard let p = byKey[k] else {
                report.unexpected.append(.init(key: k, shape: t.shape))
                continue
            }
            if t.shape != p.value.shape {
                report.mismatched.append(.init(key: k, expected: p.value.shape, got: t.shape))
                continue
            }
            // torch's copy_ refuses a quantized tensor into a float parameter: so does ckpt
            guard t.dtype.isNumericallyReadable, !t.dtype.isComplex, !t.dtype.isQuantized else {
                report.unreadable.append(.init(key: k, dtype: t.dtype))
                continue
            }
            plan.append((k, t, p))
        }
        guard report.isAcceptable(under: strictness) else { throw NNError.load(report) }

        // read everything first, so a storage error also leaves the model untouched
        var values: [(String, Parameter, DenseTensor, DType)] = []
        for (k, t, p) in plan {
            values.append((k, p, try DenseTensor(t), t.dtype))
        }
        var assigned: [ObjectIdentifier: [Float]] = [:]
        var conflicted = Set<ObjectIdentifier>()
        for (k, p, v, dtype) in values {
            let id = ObjectIdentifier(p)
            if let previous = assigned[id], previous != v.values { conflicted.insert(id) }
            assigned[id] = v.values
            p.value = v
            report.loaded.append(k)
            if dtype != p.dtype { report.converted.append((k, dtype)) }
        }
        report.sharedConflicts = report.sharedGroups.filter { group in
            guard let first = group.first, let p = byKey[first] else { return false }
            return conflicted.contains(ObjectIdentifier(p))
        }
        return report
    }
}
