import CkptTensor

/// What a transplant is asked to do besides the rules: the head, the class lists, the input conv.
public struct TransplantOptions: Sendable {
    /// Target keys whose shape depends on the class count (the head: `fc.*`, `classifier.6.*`).
    public var headKeys: Set<String> = []
    /// True when the user asked for a new head (`--num-classes`): head keys whose source shape
    /// differs are re-initialised, not reported as mismatched.
    public var replaceHead = false
    /// `--keep-classes OLD NEW`: labels of the source head's rows and of the target's.
    public var keepClasses: (old: [String], new: [String])?
    /// The target's first convolution weight key, which may be adapted to another channel count.
    public var inputConvolutionKey: String?
    /// How its input channels are adapted.
    public var inputChannelMode: InputChannelMode = .automatic
    /// Rules a recipe supplies; a user map with the same target block replaces the recipe's.
    public var recipe: [TransplantRule] = []

    /// Default options: identical keys and shapes only.
    public init() {}
}

/// Turns a source state dict's keys and shapes, a target's parameter specs and rules into a
/// `MatchPlan`. Reads no tensor data.
public enum Planner {
    /// Plans the transplant.
    ///
    /// Order: `--drop` rules remove source keys; map rules (user maps, then the recipe's for
    /// blocks no user map names) rename the keys they take; `--rename` rules apply in order to
    /// every remaining key; then each target key takes the source key of its name when the shapes
    /// fit, the head and input conv are handled as `options` say, and a module that cannot be
    /// taken whole is re-initialised whole.
    /// - Throws: `SurgeryError` for a map out of range, overlapping maps, two rules writing one
    ///   target key, a target block that does not exist, or class lists that do not fit the head.
    public static func plan(source: [(key: String, shape: [Int])], target: [ParameterSpec],
                            rules userRules: [TransplantRule], options: TransplantOptions = TransplantOptions()) throws -> MatchPlan {
        let userMaps = userRules.filter { $0.targetBlock != nil }
        let userBlocks = Set(userMaps.compactMap(\.targetBlock))
        var notes: [String] = []
        var recipeMaps: [TransplantRule] = []
        for r in options.recipe {
            guard let t = r.targetBlock, !userBlocks.contains(t) else { continue }
            if (try? claimedKeys(r, source: source)) == nil {
                notes.append("recipe rule \(r.text) skipped: the source has no such module")
                continue
            }
            recipeMaps.append(r)
        }
        let maps = userMaps + recipeMaps
        let renames = userRules.filter { if case .rename = $0.action { return true } else { return false } }
        let drops = userRules.filter { if case .drop = $0.action { return true } else { return false } }

        let targetKeys = Set(target.map { ExactKey($0.key) })
        for r in maps {
            guard let block = r.targetBlock else { continue }
            if !target.contains(where: { $0.key.hasPrefix(block + ".") }) {
                throw SurgeryError(.noSuchBlock, "\(r.flag): the target has no block '\(block)'; its blocks: \(blockList(target))")
            }
        }

        try checkOverlaps(maps, source: source)
        // which map takes each source key, and the key it becomes
        var mapped: [ExactKey: (key: String, rule: TransplantRule)] = [:]
        for r in maps {
            for (k, newKey) in try claimedKeys(r, source: source) {
                if let other = mapped[ExactKey(k)] {
                    throw SurgeryError(.conflict, "overlapping maps: \(other.rule.text) and \(r.text) both take source key \(k)")
                }
                mapped[ExactKey(k)] = (newKey, r)
            }
        }
        let dropPatterns = try drops.map { r -> (TransplantRule, KeyPattern) in
            guard case let .drop(p) = r.action else { throw SurgeryError(.badRule, r.text) }
            return (r, try KeyPattern(p, flag: "--drop"))
        }
        let renamePatterns = try renames.map { r -> (TransplantRule, KeyPattern, String) in
            guard case let .rename(p, rep) = r.action else { throw SurgeryError(.badRule, r.text) }
            return (r, try KeyPattern(p, flag: "--rename"), rep)
        }

        // candidate target key of every source key
        var unused: [MatchPlan.Unused] = []
        var explicit: [ExactKey: (source: String, rules: [TransplantRule])] = [:]
        var identity: [ExactKey: String] = [:]
        var sourceShapes: [ExactKey: [Int]] = [:]
        for (k, shape) in source {
            sourceShapes[ExactKey(k)] = shape
            if let (r, _) = dropPatterns.first(where: { $0.1.matches(k) }) {
                unused.append(.init(key: k, shape: shape, reason: "dropped by \(r.text)"))
                continue
            }
            var key = k
            var applied: [TransplantRule] = []
            if let m = mapped[ExactKey(k)] {
                key = m.key
                applied.append(m.rule)
            }
            for (r, pattern, replacement) in renamePatterns {
                if let renamed = pattern.replacing(in: key, with: replacement) {
                    key = renamed
                    applied.append(r)
                }
            }
            guard targetKeys.contains(ExactKey(key)) else {
                let why = applied.isEmpty ? MatchPlan.Unused.noSuchKey : "\(key) (by \(applied.map(\.text).joined(separator: ", "))) is not a target key"
                unused.append(.init(key: k, shape: shape, reason: why))
                continue
            }
            if applied.isEmpty {
                identity[ExactKey(key)] = k
            } else {
                if let other = explicit[ExactKey(key)] {
                    throw SurgeryError(.conflict, "two rules write target key \(key): \(other.source) by \(other.rules.map(\.text).joined(separator: ", ")) and \(k) by \(applied.map(\.text).joined(separator: ", "))")
                }
                explicit[ExactKey(key)] = (k, applied)
            }
        }

        // keep-classes rows, checked against the head
        var keptRows: [Int?]?
        if let (old, new) = options.keepClasses {
            guard !options.headKeys.isEmpty else {
                throw SurgeryError(.mismatch, "--keep-classes: the target has no classifier head")
            }
            var oldIndex: [ExactKey: Int] = [:]
            for (i, label) in old.enumerated() where oldIndex[ExactKey(label)] == nil { oldIndex[ExactKey(label)] = i }
            keptRows = new.map { oldIndex[ExactKey($0)] }
        }

        var entries: [MatchPlan.Entry] = []
        var candidate: [ExactKey: String] = [:]
        for spec in target {
            let k = ExactKey(spec.key)
            let chosen: (source: String, rules: [TransplantRule])? = explicit[k] ?? identity[k].map { ($0, []) }
            let ruleText = chosen.flatMap { c in c.rules.isEmpty ? nil : c.rules.map { "\($0.text) (\($0.originText))" }.joined(separator: ", ") }
            guard let (src, _) = chosen, let shape = sourceShapes[ExactKey(src)] else {
                entries.append(.init(spec: spec, action: options.replaceHead && options.headKeys.contains(spec.key) ? .reinitialize(.head) : .missing))
                continue
            }
            candidate[k] = src
            let action: MatchPlan.Action
            if options.headKeys.contains(spec.key), let rows = keptRows {
                guard let d0 = shape.first, let t0 = spec.shape.first, shape.dropFirst() == spec.shape.dropFirst() else {
                    throw SurgeryError(.mismatch, "--keep-classes: source \(src) \(shape) and target \(spec.key) \(spec.shape) differ beyond the class dimension")
                }
                guard let (old, new) = options.keepClasses, old.count == d0, new.count == t0, rows.count == t0 else {
                    let (o, n) = options.keepClasses ?? ([], [])
                    throw SurgeryError(.mismatch, "--keep-classes: \(o.count) old labels for a source head of \(d0) classes (\(src)), \(n.count) new labels for a target head of \(t0) (\(spec.key))")
                }
                action = .adapt(from: src, .keepClasses(rows: rows))
            } else if shape == spec.shape {
                action = .copy(from: src)
            } else if options.headKeys.contains(spec.key), options.replaceHead {
                action = .reinitialize(.head)
            } else if spec.key == options.inputConvolutionKey, shape.count == 4, spec.shape.count == 4,
                      shape[0] == spec.shape[0], shape[2...] == spec.shape[2...] {
                let mode = options.inputChannelMode.resolved(target: spec.shape[1])
                action = mode == .random ? .reinitialize(.inputConvolution)
                    : .adapt(from: src, .inputChannels(from: shape[1], to: spec.shape[1], mode: mode))
            } else {
                action = .mismatch(from: src, sourceShape: shape)
            }
            entries.append(.init(spec: spec, action: action, rule: ruleText))
        }
        // an old checkpoint's batch norm without num_batches_tracked: torch fills in zero
        let covered = Set(entries.filter(\.isCovered).map { ExactKey($0.spec.modulePath) })
        for i in entries.indices where entries[i].action == .missing && entries[i].spec.name == "num_batches_tracked"
            && covered.contains(ExactKey(entries[i].spec.modulePath)) {
            entries[i].action = .fill
        }
        makeAtomic(&entries)
        if options.inputChannelMode == .random, let key = options.inputConvolutionKey,
           let i = entries.firstIndex(where: { $0.spec.key == key }), entries[i].isCovered {
            // random asked for even when the channel counts agree
            entries[i].action = .reinitialize(.inputConvolution)
            makeAtomic(&entries)
        }

        // sources whose target did not take them: another shape, a new head, a module re-initialised whole
        for e in entries where !e.isCovered {
            guard let src = candidate[ExactKey(e.spec.key)], let shape = sourceShapes[ExactKey(src)] else { continue }
            let why: String
            switch e.action {
            case let .mismatch(_, s): why = "shape \(s) does not fit \(e.spec.key) \(e.spec.shape)"
            case .reinitialize(.head): why = "replaced by the new head \(e.spec.key) \(e.spec.shape)"
            case let .reinitialize(r): why = "\(e.spec.key): \(r.text)"
            default: why = "not taken"
            }
            unused.append(.init(key: src, shape: shape, reason: why))
        }
        // identity candidates shadowed by a rule writing the same target key
        for (tk, src) in identity where explicit[tk] != nil {
            unused.append(.init(key: src, shape: sourceShapes[ExactKey(src)] ?? [], reason: "target \(tk.string) is written by \(explicit[tk]?.rules.map(\.text).joined(separator: ", ") ?? "a rule")"))
        }
        let order = Dictionary(source.enumerated().map { (ExactKey($1.key), $0) }, uniquingKeysWith: { a, _ in a })
        unused.sort { (order[ExactKey($0.key)] ?? 0) < (order[ExactKey($1.key)] ?? 0) }
        return MatchPlan(entries: entries, unused: unused, rules: maps + renames + drops, notes: notes)
    }

    /// Re-initialises whole every module some of whose tensors are covered and some not.
    static func makeAtomic(_ entries: inout [MatchPlan.Entry]) {
        var groups: [ExactKey: [Int]] = [:]
        for (i, e) in entries.enumerated() { groups[ExactKey(e.spec.modulePath), default: []].append(i) }
        for (module, indices) in groups {
            let uncovered = indices.filter { !entries[$0].isCovered }
            guard !uncovered.isEmpty, uncovered.count < indices.count else { continue }
            let first = entries[uncovered[0]]
            let why: String
            switch first.action {
            case let .reinitialize(r):
                if case .atomic = r { continue }
                why = "\(first.spec.name) is \(r.text)"
            case let .mismatch(from, s): why = "\(first.spec.name) has shape \(s) in the source (\(from)), \(first.spec.shape) in the target"
            default: why = "\(first.spec.name) is missing from the source"
            }
            for i in indices where entries[i].isCovered {
                entries[i].action = .reinitialize(.atomic(module: module.string, because: why))
            }
        }
    }

    /// Two maps whose source ranges or modules overlap (even where only layers without weights
    /// overlap, as `3:7` and `5:14` do at ReLU and pooling) are an error.
    /// - Throws: `SurgeryError.conflict` naming both rules.
    static func checkOverlaps(_ maps: [TransplantRule], source: [(key: String, shape: [Int])]) throws {
        let first = firstNumberedContainer(source.map(\.key))
        func span(_ r: TransplantRule) -> (container: String, range: Range<Int>?)? {
            switch r.action {
            case let .slice(c, a, b, _):
                guard let container = c ?? first else { return nil }
                return (container, a ..< (b ?? Int.max))
            case let .move(s, _): return (s, nil)
            default: return nil
            }
        }
        for (i, a) in maps.enumerated() {
            guard let sa = span(a) else { continue }
            for b in maps[(i + 1)...] {
                guard let sb = span(b) else { continue }
                let clash: Bool
                switch (sa.range, sb.range) {
                case let (ra?, rb?): clash = sa.container == sb.container && ra.overlaps(rb)
                case (nil, nil): clash = sa.container == sb.container || sa.container.hasPrefix(sb.container + ".") || sb.container.hasPrefix(sa.container + ".")
                case let (ra?, nil): clash = covers(sa.container, ra, sb.container)
                case let (nil, rb?): clash = covers(sb.container, rb, sa.container)
                }
                if clash { throw SurgeryError(.conflict, "overlapping maps: \(a.text) and \(b.text) take the same source layers") }
            }
        }
    }

    /// True when module `path` is, or lies inside, a child of `container` within `range`, or contains the container.
    static func covers(_ container: String, _ range: Range<Int>, _ path: String) -> Bool {
        let prefix = container.isEmpty ? "" : container + "."
        if !container.isEmpty, container == path || container.hasPrefix(path + ".") { return true }
        guard path.hasPrefix(prefix) else { return false }
        let tail = path.dropFirst(prefix.count)
        guard let i = Int(tail.prefix { $0 != "." }) else { return false }
        return range.contains(i)
    }

    /// The source keys a map rule takes, each with the key it becomes.
    /// - Throws: `SurgeryError.noSuchBlock` when the source has no such container or module, or the slice starts past its end.
    static func claimedKeys(_ rule: TransplantRule, source: [(key: String, shape: [Int])]) throws -> [(String, String)] {
        switch rule.action {
        case let .move(from, to):
            let prefix = from + "."
            let out = source.filter { $0.key.hasPrefix(prefix) }.map { ($0.key, to + "." + $0.key.dropFirst(prefix.count)) }
            guard !out.isEmpty else {
                throw SurgeryError(.noSuchBlock, "\(rule.flag): the source has no module '\(from)'; its modules: \(blockList(source.map(\.key)))")
            }
            return out
        case let .slice(containerName, start, end, to):
            guard let container = containerName ?? firstNumberedContainer(source.map(\.key)) else {
                throw SurgeryError(.noSuchBlock, "\(rule.flag): the source has no numbered container (like VGG's features); name a module instead (--map features.3:7=enc1 or --map layer1=enc1)")
            }
            let prefix = container.isEmpty ? "" : container + "."
            var indices: [(key: String, index: Int, rest: Substring)] = []
            for (k, _) in source where k.hasPrefix(prefix) {
                let tail = k.dropFirst(prefix.count)
                guard let dot = tail.firstIndex(of: "."), let i = Int(tail[..<dot]) else { continue }
                indices.append((k, i, tail[tail.index(after: dot)...]))
            }
            guard let last = indices.map(\.index).max() else {
                throw SurgeryError(.noSuchBlock, "\(rule.flag): the source has no numbered container '\(container)'; its modules: \(blockList(source.map(\.key)))")
            }
            let first = indices.map(\.index).min() ?? 0
            guard start <= last else {
                throw SurgeryError(.noSuchBlock, "\(rule.flag): slice out of range: \(container.isEmpty ? "the source" : container) has tensors at indices \(first)…\(last)")
            }
            return indices.filter { $0.index >= start && $0.index < (end ?? Int.max) }
                .map { ($0.key, "\(to).\($0.index - start).\($0.rest)") }
        case .rename, .drop:
            return []
        }
    }

    /// The first container, in key order, whose children are numbered (`features`; `""` for a
    /// bare `nn.Sequential` whose keys start with a number).
    public static func firstNumberedContainer(_ keys: [String]) -> String? {
        for k in keys {
            let parts = k.split(separator: ".", omittingEmptySubsequences: false)
            for (i, p) in parts.enumerated().dropLast() where Int(p) != nil {
                return parts[..<i].joined(separator: ".")
            }
        }
        return nil
    }

    /// `enc1, enc2, …` — the top-level blocks of some keys, in order.
    static func blockList(_ target: [ParameterSpec]) -> String { blockList(target.map(\.key)) }

    static func blockList(_ keys: [String]) -> String {
        var seen = Set<String>()
        var out: [String] = []
        for k in keys {
            let b = MatchPlan.block(of: k)
            if seen.insert(b).inserted { out.append(b) }
        }
        return out.prefix(40).joined(separator: ", ") + (out.count > 40 ? ", …" : "")
    }
}
