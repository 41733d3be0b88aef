import CkptKernels
import CkptNN
import CkptTensor

// torch's optimizer.state_dict() layout, to and from `Value`:
//
//   {'state': {0: {'momentum_buffer': tensor}, 2: {...}, ...},       per-parameter state, keyed by
//                                                                      index, in creation order
//    'param_groups': [{'lr': 0.1, 'momentum': 0.9, ..., 'params': [0, 1]}, ...]}
//
// Parameters are numbered across groups from 0 in group order (torch's `pack_group`). Loading
// maps the saved indices onto this optimizer's parameters position by position, as torch's
// `load_state_dict` zips them, after checking what torch does not: every state tensor's shape.

/// Where loaded values come from, for messages.
let stateDictContext = "optimizer state dict"

/// Builds a state dict from per-parameter state (in creation order) and each group's
/// hyper-parameter items (in torch's key order, without `initial_lr` and `params`, which follow).
func makeOptimizerStateDict(groups: [ParameterGroup], groupItems: [[(String, Value)]],
                            state: [(parameter: Parameter, items: [(String, Value)])]) -> Value {
    var index: [ObjectIdentifier: Int] = [:]
    var next = 0
    var packedGroups: [Value] = []
    for (group, items) in zip(groups, groupItems) {
        var params: [Value] = []
        for entry in group.parameters {
            let id = ObjectIdentifier(entry.parameter)
            if index[id] == nil {
                index[id] = next
                next += 1
            }
            params.append(.int(index[id] ?? 0))
        }
        var dict = PyDict(items: items.map { (.string($0.0), $0.1) })
        if let initial = group.initialLearningRate { dict.items.append((.string("initial_lr"), .float(initial))) }
        dict.items.append((.string("params"), .list(params)))
        packedGroups.append(.dict(dict))
    }
    // state of a parameter no longer in any group is dropped (torch would keep it under the
    // tensor itself as key, which no file can hold)
    let packedState = state.compactMap { entry -> (key: Value, value: Value)? in
        guard let i = index[ObjectIdentifier(entry.parameter)] else { return nil }
        return (.int(i), .dict(PyDict(items: entry.items.map { (.string($0.0), $0.1) })))
    }
    return .dict(PyDict(items: [(.string("state"), .dict(PyDict(items: packedState))),
                                (.string("param_groups"), .list(packedGroups))]))
}

/// A float32 tensor value holding `values` under `shape`.
/// - Throws: `TensorError` when the count does not fill the shape.
func stateTensor(_ values: [Float], shape: [Int]) throws -> Value {
    .tensor(try Tensor(float32: values, shape: shape))
}

/// One saved parameter group, read key by key with messages that name it.
struct SavedGroup {
    /// The group's mapping.
    let dict: PyDict
    /// `param_groups[1]`.
    let path: String

    private func context(_ key: String) -> String { "\(stateDictContext): \(path)['\(key)']" }

    /// The number under `key`, or `fallback` when the key is absent (nil: the key is required).
    /// - Throws: `OptimizerError.malformedState` for a missing key or a value that is no number.
    func double(_ key: String, default fallback: Double? = nil) throws -> Double {
        guard let v = dict[key] else {
            if let fallback { return fallback }
            throw OptimizerError(.malformedState, "\(stateDictContext): \(path)", "has no '\(key)'")
        }
        return try number(v, context: context(key))
    }

    /// The number under `key`, or nil when the key is absent or None.
    /// - Throws: `OptimizerError.malformedState` for a value that is no number.
    func optionalDouble(_ key: String) throws -> Double? {
        guard let v = dict[key] else { return nil }
        if case .none = v { return nil }
        return try number(v, context: context(key))
    }

    /// The flag under `key`, or `fallback` when absent or None (torch's `setdefault`).
    /// - Throws: `OptimizerError.malformedState` for a value that is no bool.
    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        switch dict[key] {
        case nil, .some(.none): return fallback
        case let .some(.bool(b)): return b
        case let .some(.int(i)): return i != 0
        case let .some(v): throw OptimizerError(.malformedState, context(key), "expected a bool, got \(v.typeName)")
        }
    }

    /// The pair of numbers under `key` (`betas`).
    /// - Throws: `OptimizerError.malformedState` for a missing key or anything but two numbers.
    func pair(_ key: String) throws -> (Double, Double) {
        guard let v = dict[key] else { throw OptimizerError(.malformedState, "\(stateDictContext): \(path)", "has no '\(key)'") }
        guard let items = v.sequenceValue, items.count == 2 else {
            throw OptimizerError(.malformedState, context(key), "expected a pair of numbers, got \(v.typeName)")
        }
        return (try number(items[0], context: context(key) + "[0]"), try number(items[1], context: context(key) + "[1]"))
    }
}

/// A Python number (or a one-element tensor, as torch allows a tensor `lr`) as a double.
/// - Throws: `OptimizerError.malformedState` naming `context`.
func number(_ v: Value, context: String) throws -> Double {
    switch v {
    case let .float(d): return d
    case let .int(i): return Double(i)
    case let .bool(b): return b ? 1 : 0
    case let .tensor(t) where t.elementCount == 1:
        guard let d = try? t.doubles().first else {
            throw OptimizerError(.malformedState, context, "expected a number, got a \(t.dtype.rawValue) tensor")
        }
        return d
    default:
        throw OptimizerError(.malformedState, context, "expected a number, got \(v.typeName)")
    }
}

/// A saved state dict matched to this optimizer's groups: each saved group with its path, and each
/// saved state entry with the parameter it belongs to, in the saved order.
struct LoadedOptimizerState {
    /// The saved groups, one per group of the optimizer, in order.
    var groups: [SavedGroup]
    /// The saved per-parameter state, in the saved order.
    var state: [(parameter: Parameter, key: String, path: String, items: PyDict)]

    /// Matches `value` to `groups`: same group count, same parameter count in each group, and
    /// every state entry keyed by an index some saved group lists.
    /// - Throws: `OptimizerError.stateMismatch` / `.malformedState`.
    init(_ value: Value, groups: [ParameterGroup]) throws {
        guard let root = value.dictValue else {
            throw OptimizerError(.malformedState, stateDictContext, "expected a dict with 'state' and 'param_groups', got \(value.typeName)")
        }
        guard let savedGroups = root["param_groups"]?.sequenceValue else {
            throw OptimizerError(.malformedState, stateDictContext, "has no 'param_groups' list")
        }
        guard savedGroups.count == groups.count else {
            throw OptimizerError(.stateMismatch, stateDictContext,
                                 "holds \(savedGroups.count) parameter group(s), the optimizer has \(groups.count)")
        }
        var parameterOf: [Int: (parameter: Parameter, key: String)] = [:]
        self.groups = []
        for (g, saved) in savedGroups.enumerated() {
            let path = "param_groups[\(g)]"
            guard let dict = saved.dictValue else {
                throw OptimizerError(.malformedState, "\(stateDictContext): \(path)", "expected a dict, got \(saved.typeName)")
            }
            guard let params = dict["params"]?.sequenceValue else {
                throw OptimizerError(.malformedState, "\(stateDictContext): \(path)", "has no 'params' list")
            }
            let mine = groups[g].parameters
            guard params.count == mine.count else {
                throw OptimizerError(.stateMismatch, "\(stateDictContext): \(path)",
                                     "holds \(params.count) parameter(s), the optimizer's group \(g) holds \(mine.count)")
            }
            for (p, saved) in zip(mine, params) {
                guard let i = saved.intValue else {
                    throw OptimizerError(.malformedState, "\(stateDictContext): \(path)['params']", "expected integer indices, got \(saved.typeName)")
                }
                parameterOf[i] = (p.parameter, p.key)
            }
            self.groups.append(SavedGroup(dict: dict, path: path))
        }
        guard let state = root["state"]?.dictValue else {
            throw OptimizerError(.malformedState, stateDictContext, "has no 'state' dict")
        }
        self.state = []
        for (k, v) in state.items {
            let path = "state[\(k.pathComponent)]"
            guard let i = k.intValue, let target = parameterOf[i] else {
                throw OptimizerError(.stateMismatch, "\(stateDictContext): \(path)",
                                     "names no parameter of 'param_groups' (they list \(parameterOf.count) indices)")
            }
            guard let items = v.dictValue else {
                throw OptimizerError(.malformedState, "\(stateDictContext): \(path)", "expected a dict, got \(v.typeName)")
            }
            self.state.append((target.parameter, target.key, path, items))
        }
    }
}

/// The float32 values of the tensor under `key` of a saved state entry, checked against the
/// parameter's shape; nil when the key is absent or None.
/// - Throws: `OptimizerError.stateMismatch` for another shape, `.malformedState` for a non-tensor.
func savedStateTensor(_ items: PyDict, _ key: String, parameter: Parameter, parameterKey: String, path: String) throws -> [Float]? {
    switch items[key] {
    case nil, .some(.none): return nil
    case let .some(.tensor(t)):
        guard t.shape == parameter.value.shape else {
            throw OptimizerError(.stateMismatch, "\(stateDictContext): \(path)['\(key)']",
                                 "has shape \(t.shape), parameter '\(parameterKey)' has shape \(parameter.value.shape)")
        }
        do {
            return try t.floats()
        } catch {
            throw OptimizerError(.malformedState, "\(stateDictContext): \(path)['\(key)']", "cannot be read as float32: \(error)")
        }
    case let .some(v):
        throw OptimizerError(.malformedState, "\(stateDictContext): \(path)['\(key)']", "expected a tensor, got \(v.typeName)")
    }
}

/// Refuses state entries holding keys the optimizer does not keep (an Adam state loaded into SGD).
/// - Throws: `OptimizerError.stateMismatch` naming the keys.
func checkStateKeys(_ items: PyDict, allowed: [String], optimizer: String, path: String) throws {
    let extra = items.items.map { $0.key.stringValue ?? $0.key.pathComponent }.filter { !allowed.contains($0) }
    guard extra.isEmpty else {
        throw OptimizerError(.stateMismatch, "\(stateDictContext): \(path)",
                             "holds \(extra.map { "'\($0)'" }.joined(separator: ", ")), which \(optimizer) does not keep (expected \(allowed.map { "'\($0)'" }.joined(separator: ", ")))")
    }
}
