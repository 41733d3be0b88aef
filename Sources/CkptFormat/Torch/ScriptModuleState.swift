import CkptTensor

/// What `torch.jit.load(f).state_dict()` holds of a TorchScript module tree: each module's
/// registered parameters and buffers (the `__parameters__` and `__buffers__` lists its compiled
/// class declares in `code/…py`) and its submodules, recursively — not the other tensor-holding
/// attributes a scripted module pickles (`nn.LSTM`'s `_flat_weights` list, which aliases its
/// weights; a quantized module's `__getstate__` tuple of packed weights).
enum ScriptModuleState {
    /// Parameter and buffer names per class declared in one compiled source file, for the
    /// classes that declare them (modules; NamedTuples and other classes declare none).
    static func declarations(in source: String) -> [String: Set<String>] {
        var out: [String: Set<String>] = [:]
        var current: String?
        for line in source.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("class ") {
                let rest = line.dropFirst(6)
                current = String(rest.prefix(while: { $0 != "(" && $0 != ":" && $0 != " " }))
                continue
            }
            guard let c = current, line.hasPrefix("  __") else { continue }
            let trimmed = line.drop(while: { $0 == " " })
            guard trimmed.hasPrefix("__parameters__ =") || trimmed.hasPrefix("__buffers__ =") else { continue }
            // the names are the quoted strings of the list literal
            let quoted = trimmed.split(separator: "\"", omittingEmptySubsequences: false).enumerated()
                .filter { $0.offset % 2 == 1 }.map { String($0.element) }
            out[c, default: []].formUnion(quoted)
        }
        return out
    }

    /// `root` with every module object's state cut to what torch's `state_dict()` walks;
    /// `declared` gives a class's parameters and buffers, nil for a class that is not a module
    /// (or whose code declares nothing), which is kept as it is.
    static func prune(_ root: Value, declared: (QualifiedName) -> Set<String>?) -> Value {
        guard case var .object(o) = root, let names = declared(o.global) else { return root }
        switch o.state {
        case var .dict(d)?:
            d.items = d.items.compactMap { k, v in
                if let name = k.stringValue, names.contains(name) { return (k, v) }
                if case let .object(child) = v, declared(child.global) != nil { return (k, prune(v, declared: declared)) }
                return holdsTensor(v) ? nil : (k, v)
            }
            o.state = .dict(d)
        case let s?:
            // a __getstate__ value (a quantized module's packed weights): not in its state_dict()
            if holdsTensor(s) { o.state = nil }
        case nil:
            break
        }
        return .object(o)
    }

    private static func holdsTensor(_ v: Value) -> Bool {
        var found = false
        Checkpoint.walk(v, path: "") { _, x in
            switch x {
            case .tensor, .sparse, .meta: found = true
            default: break
            }
        }
        return found
    }
}
