import CkptTensor

/// Turning inert objects back into plain data, so tensors pulled out of a whole pickled
/// `nn.Module` or a checkpoint holding an `argparse.Namespace` can be written as a file
/// `torch.load(weights_only=True)` reads.
public enum Salvage {
    /// True when `v` is an inert `nn.Module` (its state has `_parameters` and `_modules`).
    public static func isModule(_ v: Value) -> Bool {
        guard case let .object(o) = v, let s = o.state?.dictValue else { return false }
        return s["_parameters"] != nil && s["_modules"] != nil
    }

    /// The `state_dict()` of an inert `nn.Module`: parameters, then persistent buffers, then
    /// submodules, keyed as torch keys them (`features.0.weight`). Nil when `v` is not a module.
    public static func moduleStateDict(_ v: Value) -> [(key: String, tensor: Tensor)]? {
        guard isModule(v) else { return nil }
        var out: [(String, Tensor)] = []
        func walk(_ m: Value, _ prefix: String, _ depth: Int) {
            guard depth < 100, case let .object(o) = m, let s = o.state?.dictValue else { return }
            var nonPersistent = Set<String>()
            if let np = s["_non_persistent_buffers_set"], case let .set(names) = np {
                for n in names { if let n = n.stringValue { nonPersistent.insert(n) } }
            }
            for (k, t) in s["_parameters"]?.dictValue?.items ?? [] {
                if let name = k.stringValue, let tensor = t.tensorValue { out.append((prefix + name, tensor)) }
            }
            for (k, t) in s["_buffers"]?.dictValue?.items ?? [] {
                if let name = k.stringValue, !nonPersistent.contains(name), let tensor = t.tensorValue { out.append((prefix + name, tensor)) }
            }
            for (k, child) in s["_modules"]?.dictValue?.items ?? [] {
                if let name = k.stringValue { walk(child, prefix + name + ".", depth + 1) }
            }
        }
        walk(v, "", 0)
        return out
    }

    /// `root` with every inert object replaced by data: a module by its state dict (an
    /// OrderedDict), any other object by a dict of its attributes (or the list of its
    /// constructor arguments); `notes` says what was replaced, by path.
    public static func dataOnly(_ root: Value) -> (value: Value, notes: [String]) {
        var notes: [String] = []
        func convert(_ v: Value, _ path: String, _ depth: Int) -> Value {
            guard depth < 200 else { return .none }
            func join(_ c: String) -> String { path.isEmpty ? c : path + "." + c }
            switch v {
            case let .object(o):
                let at = path.isEmpty ? "(root)" : path
                if let sd = moduleStateDict(v) {
                    notes.append("\(at): \(o.global) module replaced by its state dict (\(sd.count) tensors)")
                    return .dict(PyDict(items: sd.map { (.string($0.key), .tensor($0.tensor)) }, kind: .orderedDict))
                }
                if let s = o.state?.dictValue {
                    notes.append("\(at): \(o.global) object replaced by a dict of its attributes")
                    var d = PyDict(kind: .dict)
                    d.items = s.items.map { ($0.key, convert($0.value, join($0.key.pathComponent), depth + 1)) }
                    return .dict(d)
                }
                notes.append("\(at): \(o.global) object replaced by the list of its arguments")
                return .list(o.arguments.enumerated().map { convert($1, join(String($0)), depth + 1) })
            case let .global(g):
                notes.append("\(path.isEmpty ? "(root)" : path): reference to \(g) replaced by its name")
                return .string(g.description)
            case var .dict(d):
                d.items = d.items.map { ($0.key, convert($0.value, join($0.key.pathComponent), depth + 1)) }
                d.attributes = d.attributes.map { ($0.name, convert($0.value, path, depth + 1)) }
                return .dict(d)
            case let .list(a): return .list(a.enumerated().map { convert($1, join(String($0)), depth + 1) })
            case let .tuple(a): return .tuple(a.enumerated().map { convert($1, join(String($0)), depth + 1) })
            case let .set(a): return .set(a.enumerated().map { convert($1, join(String($0)), depth + 1) })
            default: return v
            }
        }
        let v = convert(root, "", 0)
        return (v, notes)
    }
}
