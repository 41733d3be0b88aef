import CkptTensor

/// `--auto`: proposes map rules when the source and target name their blocks differently, by
/// aligning the source's modules, in order, with the target's blocks by their keys and shapes.
///
/// A target block is matched to a source module with exactly the same relative keys and shapes
/// (`layer1` → `stage1`), or to a slice of a numbered container (`features[3:7]` → `enc1`);
/// a block with neither is matched child by child, and only when every child finds its match
/// (`stem.0` ← `conv1`, `stem.1` ← `bn1`). Among equal candidates the first one after the
/// previous match in source order wins, at a lower confidence.
public enum AutoMapper {
    /// Rules for the target blocks that identical keys and the `existing` rules leave uncovered.
    public static func propose(source: [(key: String, shape: [Int])], target: [ParameterSpec],
                               existing: [TransplantRule] = []) -> [TransplantRule] {
        let sourceShapes = Dictionary(source.map { ($0.key, $0.shape) }, uniquingKeysWith: { a, _ in a })
        let ruled = Set(existing.compactMap(\.targetBlock))
        let modules = SourceModules(source)
        var state = State()
        var out: [TransplantRule] = []
        for block in children(of: "", in: target.map(\.key)) where !ruled.contains(block) {
            let specs = target.filter { $0.key.hasPrefix(block + ".") }
            if specs.allSatisfy({ sourceShapes[$0.key] == $0.shape }) { continue }
            if let rules = match(block: block, specs: specs, target: target, modules: modules, state: &state) {
                out += rules
            }
        }
        return closeSlices(out, source: source)
    }

    struct State {
        var cursor = -1
        var used: [String] = []
    }

    /// Rules for one block, trying the whole block first, then its children (all or nothing).
    static func match(block: String, specs: [ParameterSpec], target: [ParameterSpec], modules: SourceModules,
                      state: inout State) -> [TransplantRule]? {
        let signature = SourceModules.signature(specs.map { (String($0.key.dropFirst(block.count + 1)), $0.shape) })
        let free = modules.paths(with: signature).filter { p in !state.used.contains { overlaps($0, p) } }
        if !free.isEmpty {
            let after = free.filter { modules.position[$0, default: 0] > state.cursor }
            let chosen = after.first ?? free[0]
            let confidence = free.count == 1 ? 1.0 : (after.isEmpty ? 0.5 : 0.9)
            state.cursor = modules.position[chosen, default: 0]
            state.used.append(chosen)
            return [TransplantRule(.move(source: chosen, target: block), origin: .auto(confidence: confidence))]
        }
        if let slice = matchSlice(block: block, specs: specs, modules: modules, state: &state) { return [slice] }
        let kids = children(of: block, in: specs.map(\.key))
        guard kids.count > 1 || (kids.count == 1 && kids[0] != block) else { return nil }
        var saved = state
        var rules: [TransplantRule] = []
        for kid in kids {
            let kidSpecs = specs.filter { $0.key.hasPrefix(kid + ".") }
            guard !kidSpecs.isEmpty, let r = match(block: kid, specs: kidSpecs, target: target, modules: modules, state: &saved) else {
                return nil
            }
            rules += r
        }
        state = saved
        return rules
    }

    /// A slice `container[A:…]` whose children, renumbered from 0, are exactly the block's.
    static func matchSlice(block: String, specs: [ParameterSpec], modules: SourceModules, state: inout State) -> TransplantRule? {
        var rel: [(index: Int, rest: String, shape: [Int])] = []
        for s in specs {
            let tail = s.key.dropFirst(block.count + 1)
            guard let dot = tail.firstIndex(of: "."), let j = Int(tail[..<dot]) else { return nil }
            rel.append((j, String(tail[tail.index(after: dot)...]), s.shape))
        }
        guard let first = rel.first else { return nil }
        var found: [(container: String, start: Int)] = []
        for (container, indices) in modules.numbered {
            for i in indices.sorted() where i - first.index >= 0 {
                let start = i - first.index
                let prefix = container.isEmpty ? "" : container + "."
                if rel.allSatisfy({ modules.shapes["\(prefix)\(start + $0.index).\($0.rest)"] == $0.shape }) {
                    let path = "\(prefix)\(start + first.index)"
                    if !state.used.contains(where: { overlaps($0, path) }) { found.append((container, start)) }
                }
            }
        }
        guard !found.isEmpty else { return nil }
        func position(_ f: (container: String, start: Int)) -> Int {
            modules.position[(f.container.isEmpty ? "" : f.container + ".") + "\(f.start + first.index)", default: 0]
        }
        let after = found.filter { position($0) > state.cursor }
        let chosen = after.first ?? found[0]
        let confidence = found.count == 1 ? 1.0 : (after.isEmpty ? 0.5 : 0.9)
        state.cursor = position(chosen)
        let prefix = chosen.container.isEmpty ? "" : chosen.container + "."
        for r in rel { state.used.append("\(prefix)\(chosen.start + r.index)") }
        let end = chosen.start + (rel.map(\.index).max() ?? 0) + 1
        return TransplantRule(.slice(container: chosen.container, start: chosen.start, end: end, target: block),
                              origin: .auto(confidence: confidence))
    }

    /// Each slice runs to where the next slice of its container starts (the layers without
    /// weights between them, ReLU and pooling, go with it); the last runs to the end when no
    /// weights follow it.
    static func closeSlices(_ rules: [TransplantRule], source: [(key: String, shape: [Int])]) -> [TransplantRule] {
        var out = rules
        for (i, r) in rules.enumerated() {
            guard case let .slice(c, a, b, t) = r.action, let end = b else { continue }
            let starts = rules.compactMap { other -> Int? in
                if case let .slice(c2, a2, _, _) = other.action, c2 == c, a2 > a { return a2 }
                return nil
            }
            var newEnd: Int? = end
            if let next = starts.min() {
                newEnd = next
            } else {
                let prefix = (c ?? "").isEmpty ? "" : (c ?? "") + "."
                let later = source.contains { k in
                    guard k.key.hasPrefix(prefix) else { return false }
                    let tail = k.key.dropFirst(prefix.count)
                    return tail.firstIndex(of: ".").flatMap { Int(tail[..<$0]) }.map { $0 >= end } ?? false
                }
                if !later { newEnd = nil }
            }
            out[i] = TransplantRule(.slice(container: c, start: a, end: newEnd, target: t), origin: r.origin)
        }
        return out
    }

    /// The distinct direct children of `parent` among `keys` (modules, not tensor names), in order.
    static func children(of parent: String, in keys: [String]) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        let prefix = parent.isEmpty ? "" : parent + "."
        for k in keys where k.hasPrefix(prefix) {
            let tail = k.dropFirst(prefix.count)
            guard let dot = tail.firstIndex(of: ".") else { continue }
            let child = prefix + tail[..<dot]
            if seen.insert(child).inserted { out.append(child) }
        }
        return out
    }

    /// True when one path is the other or lies inside it.
    static func overlaps(_ a: String, _ b: String) -> Bool {
        a == b || a.isEmpty || b.isEmpty || a.hasPrefix(b + ".") || b.hasPrefix(a + ".")
    }
}

/// Every module path of a source with the signature of what lies below it.
struct SourceModules {
    var signatures: [String: String] = [:]
    var position: [String: Int] = [:]
    var shapes: [String: [Int]] = [:]
    var numbered: [String: Set<Int>] = [:]
    private var bySignature: [String: [String]] = [:]

    init(_ source: [(key: String, shape: [Int])]) {
        var members: [String: [(String, [Int])]] = [:]
        var order: [String] = []
        for (i, (key, shape)) in source.enumerated() {
            shapes[key] = shape
            let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            for depth in 1 ..< parts.count {
                let path = parts[..<depth].joined(separator: ".")
                if members[path] == nil { order.append(path); position[path] = i }
                members[path, default: []].append((parts[depth...].joined(separator: "."), shape))
                if Int(parts[depth]) != nil, depth + 1 < parts.count, let n = Int(parts[depth]) {
                    numbered[path, default: []].insert(n)
                }
            }
            if parts.count > 1, let n = Int(parts[0]) { numbered["", default: []].insert(n) }
        }
        for p in order {
            let s = SourceModules.signature(members[p] ?? [])
            signatures[p] = s
            bySignature[s, default: []].append(p)
        }
    }

    /// Source module paths whose relative keys and shapes are exactly `signature`, in order.
    func paths(with signature: String) -> [String] { bySignature[signature] ?? [] }

    /// Relative keys and shapes, order-independent.
    static func signature(_ items: [(String, [Int])]) -> String {
        items.map { "\($0.0)=\($0.1.map(String.init).joined(separator: "x"))" }.sorted().joined(separator: ";")
    }
}
