import ArgumentParser
import CkptFormat
import CkptSurgery
import CkptTensor

/// `ckpt inspect FILE`: what a checkpoint holds, without loading tensor data.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the format, tensors, totals and likely architecture of a checkpoint.",
        discussion: "Tensor data is not read unless --stats is given. Reads zip (torch >= 1.6), legacy, tar (torch < 0.1.10), safetensors and TorchScript files.")

    @Argument(help: "A .pth/.pt/.bin/.ckpt/.safetensors file.")
    var file: String

    @Flag(name: .long, help: "Print one JSON object instead of tables.")
    var json = false

    @Flag(name: .long, help: "Show the module tree (layer1.0.conv1.* grouped under layer1 > 0 > conv1).")
    var tree = false

    @Flag(name: .long, help: "Add min/max/mean/std and NaN/Inf/zero counts per tensor (reads the data).")
    var stats = false

    @OptionGroup var read: ReadOptions

    func run() throws {
        // the reader's arena and the report's text are large arrays that come and go: each a
        // mapping of its own, returned when freed (else they stay in the heap: 148 → 131 MB at
        // 100,000 tensors)
        CLI.returnLargeAllocations()
        try CLI.run {
            let ckpt = try CLI.load(file, read)
            let report = try InspectReport(ckpt, file: file, stats: stats)
            if json {
                CLI.printJSON(report.json(tree: tree))
            } else {
                // written as it is made, a megabyte at a time: the table of 300,000 rows is never
                // held whole
                print(report.text(tree: tree) { print($0, terminator: "") })
            }
        }
    }
}

/// Lines appended into one string: a table of 300,000 rows is written once, not kept as lines
/// and copied again to join them.
struct TextLines {
    /// What is not flushed yet.
    private(set) var text = ""
    private var empty = true
    /// Takes the text so far once it passes a megabyte (nil: keep it all).
    let flush: ((String) -> Void)?

    init(flush: ((String) -> Void)? = nil) { self.flush = flush }

    /// Appends `line` (after a newline unless it is the first).
    mutating func append(_ line: String) {
        startLine()
        text += line
        flushIfLarge()
    }

    /// Appends a table as the next lines, handing them to `flush` a megabyte at a time.
    mutating func appendTable(_ header: [String], rowCount: Int, right: Set<Int>, _ row: (Int) -> [String]) {
        startLine()
        CLI.appendTable(to: &text, header, rowCount: rowCount, right: right, row,
                        afterRow: flush.map { f in { TextLines.drain(&$0, to: f) } })
    }

    private mutating func flushIfLarge() {
        if let flush { TextLines.drain(&text, to: flush) }
    }

    /// Hands `text` to `flush` and empties it once it passes a megabyte.
    private static func drain(_ text: inout String, to flush: (String) -> Void) {
        guard text.utf8.count >= 1 << 20 else { return }
        flush(text)
        text = ""
    }

    private mutating func startLine() {
        if !empty { text += "\n" }
        empty = false
    }
}

/// Everything `inspect` says about one checkpoint.
struct InspectReport {
    struct Row {
        var name: String
        var tensor: Tensor
        var kind: String
        var sharedWith: [String]
        /// Boxed: a row of 300,000 is 104 bytes, not 200 (most reports have no statistics).
        private var statsBox: StatsBox?
        var stats: TensorStats? { statsBox?.stats }

        init(name: String, tensor: Tensor, kind: String, sharedWith: [String], stats: TensorStats?) {
            self.name = name
            self.tensor = tensor
            self.kind = kind
            self.sharedWith = sharedWith
            statsBox = stats.map(StatsBox.init)
        }
    }

    final class StatsBox {
        let stats: TensorStats
        init(_ stats: TensorStats) { self.stats = stats }
    }

    let file: String
    let checkpoint: Checkpoint
    let located: LocatedStateDict
    let rows: [Row]
    let architecture: ArchitectureGuess?
    let nonTensors: [(path: String, value: Value)]
    /// Sparse tensors, each with the statistics of its stored values when asked for.
    let sparse: [(path: String, tensor: SparseTensor, stats: TensorStats?)]
    /// Tensors saved from the meta device (no values).
    let meta: [(path: String, tensor: MetaTensor)]
    /// Values past `maxValues`, counted but not listed.
    let omittedValues: Int
    /// Non-tensor values listed at most.
    static let maxValues = 10_000
    /// A list or tuple of more scalars than this is one value.
    static let longSequence = 64

    init(_ ckpt: Checkpoint, file: String, stats: Bool) throws {
        self.file = file
        checkpoint = ckpt
        located = KeyAnalysis.locateStateDict(ckpt)
        let all = ckpt.tensors
        // tensors per storage first: names are gathered only for storages several tensors share
        // (an array of names for every storage cost ~70 bytes a tensor)
        var viewCount: [ObjectIdentifier: Int32] = [:]
        for (_, t) in all { viewCount[ObjectIdentifier(t.storage), default: 0] += 1 }
        var byStorage: [ObjectIdentifier: [String]] = [:]
        for (p, t) in all where viewCount[ObjectIdentifier(t.storage), default: 0] > 1 {
            byStorage[ObjectIdentifier(t.storage), default: []].append(p)
        }
        viewCount = [:]
        let rootPrefix = located.rootPath.isEmpty ? "" : located.rootPath + "."
        let progress = Progress("stats", total: all.count)
        var byName: [String: Tensor]?
        var rows: [Row] = []
        rows.reserveCapacity(all.count)
        for (i, (p, t)) in all.enumerated() {
            let inRoot = located.rootPath.isEmpty || p.hasPrefix(rootPrefix)
            let kind = !inRoot || located.isOptimizerState ? "other" : KeyAnalysis.role(of: p, t, tensorNamed: { name in
                // built only for a one-element `scale` (a quantized module's): a name index of a
                // 300k-tensor file costs tens of MB
                if byName == nil { byName = Dictionary(all.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a }) }
                return byName?[name]
            }).rawValue
            let shared = (byStorage[ObjectIdentifier(t.storage)] ?? []).filter { $0 != p }
            var s: TensorStats?
            if stats, t.dtype.isNumericallyReadable {
                do {
                    s = try TensorStats.compute(t)
                } catch let e as TensorError {
                    // a read that fails (a file that shrank, a record that cannot be mapped) is
                    // an I/O error, never a malformed file
                    if case let .io(_, m) = e { throw FormatError(.io, file: file, member: p, m) }
                    throw FormatError(.corrupt, file: file, member: p, "\(e)")
                } catch let e as FormatError where e.kind == .io {
                    throw e
                } catch {
                    throw FormatError(.corrupt, file: file, member: p, "\(error)")
                }
                t.storage.evict()
                progress.update(i + 1)
            }
            rows.append(Row(name: p, tensor: t, kind: kind, sharedWith: shared, stats: s))
        }
        progress.finish()
        self.rows = rows
        sparse = try (ckpt.info.sparseTensors > 0 ? ckpt.sparseTensors : []).map { p, t in
            guard stats, t.dtype.isNumericallyReadable else { return (p, t, nil) }
            do {
                return (p, t, try TensorStats.compute(t.values))
            } catch let e as TensorError {
                if case let .io(_, m) = e { throw FormatError(.io, file: file, member: p, m) }
                throw FormatError(.corrupt, file: file, member: p, "\(e)")
            }
        }
        meta = ckpt.metaTensors
        architecture = KeyAnalysis.guessArchitecture(located.stateDict.shapes)
        var leaves: [(String, Value)] = []
        var omitted = 0
        func add(_ p: String, _ v: Value) {
            if leaves.count < Self.maxValues { leaves.append((p, v)) } else { omitted += 1 }
        }
        // a long run of numbers or strings (a dataset split's indices) is one value, listed whole
        var longSequences = Set<ExactKey>()
        Checkpoint.walk(ckpt.root, path: "") { p, v in
            if let items = v.sequenceValue, items.count > Self.longSequence, items.allSatisfy(\.isScalar) {
                longSequences.insert(ExactKey(p))
                add(p, v)
                return
            }
            if !p.isEmpty, longSequences.contains(ExactKey(StateDict.modulePath(of: p))) { return }
            switch v {
            case .none, .bool, .int, .bigInt, .float, .complex, .string, .bytes, .dtype, .device, .global, .reference:
                add(p, v)
            case let .object(o):
                add(p, .global(o.global))
            case let .dict(d) where d.items.isEmpty && d.attributes.isEmpty && !p.isEmpty:
                // an empty container is a value too (a scheduler's `lr_lambdas: [{}, {}]`)
                add(p, v)
            case let .list(a) where a.isEmpty && !p.isEmpty: add(p, v)
            case let .tuple(a) where a.isEmpty && !p.isEmpty: add(p, v)
            case let .set(a) where a.isEmpty && !p.isEmpty: add(p, v)
            default: break
            }
        }
        omittedValues = omitted
        // top-level scalars first (epoch, best_acc1, arch, lr), then the rest in file order
        nonTensors = leaves.filter { !$0.0.contains(".") } + leaves.filter { $0.0.contains(".") }
    }

    /// Dotted paths two tensors share (`{'a.b': x, 'a': {'b': y}}`, `{1: x, '1': y}`): both are
    /// listed, and tools that key by path (safetensors, `diff`) refuse the file.
    var collisionWarnings: [String] {
        var seen = Set<ExactKey>()
        var dups: [String] = []
        for r in rows where !seen.insert(ExactKey(r.name)).inserted && !dups.contains(r.name) { dups.append(r.name) }
        return dups.map { "two tensors have the dotted path '\($0)' (different keys that read alike); both are listed, safetensors output and diff refuse it" }
    }

    /// Devices the storages were saved on, with how many storages each (`cuda:0`: 12).
    var devices: [(device: String, storages: Int)] {
        var seen = Set<ObjectIdentifier>()
        var counts: [String: Int] = [:]
        var order: [String] = []
        for r in rows where seen.insert(ObjectIdentifier(r.tensor.storage)).inserted {
            let d = r.tensor.storage.location.isEmpty ? "cpu" : r.tensor.storage.location
            if counts[d] == nil { order.append(d) }
            counts[d, default: 0] += 1
        }
        return order.map { ($0, counts[$0] ?? 0) }
    }

    /// The PyTorch Lightning version, when this is a Lightning checkpoint.
    var lightningVersion: String? { KeyAnalysis.lightningVersion(checkpoint) }

    /// The other values for people: runs of numbered siblings (`param_groups.0.params.0 … .160`)
    /// folded into one line each.
    var foldedValues: [(path: String, text: String)] {
        var out: [(String, String)] = []
        var i = 0
        while i < nonTensors.count {
            let (p, v) = nonTensors[i]
            let parent = StateDict.modulePath(of: p)
            if !parent.isEmpty, StateDict.leafName(of: p) == "0" {
                var j = i
                var items: [String] = []
                while j < nonTensors.count, StateDict.modulePath(of: nonTensors[j].path) == parent,
                      StateDict.leafName(of: nonTensors[j].path) == String(items.count) {
                    items.append(CLI.literal(nonTensors[j].value))
                    j += 1
                }
                if items.count > 3 {
                    let shown = items.count > 8 ? items.prefix(6).joined(separator: ", ") + ", …, " + (items.last ?? "") : items.joined(separator: ", ")
                    out.append((parent, "[\(shown)] (\(items.count) items)"))
                    i = j
                    continue
                }
            }
            if let items = v.sequenceValue, items.count > Self.longSequence {
                let shown = items.prefix(6).map(CLI.literal).joined(separator: ", ") + ", …, " + CLI.literal(items[items.count - 1])
                out.append((p, "[\(shown)] (\(CLI.grouped(items.count)) items)"))
            } else {
                out.append((p, CLI.literal(v)))
            }
            i += 1
        }
        return out
    }

    private var info: FormatInfo { checkpoint.info }

    private func totals() -> [(dtype: DType, count: Int, elements: Int, bytes: Int)] {
        var order: [DType] = []
        var acc: [DType: (Int, Int, Int)] = [:]
        for r in rows {
            if acc[r.tensor.dtype] == nil { order.append(r.tensor.dtype) }
            let a = acc[r.tensor.dtype] ?? (0, 0, 0)
            acc[r.tensor.dtype] = (a.0 + 1, a.1 + r.tensor.elementCount, a.2 + r.tensor.byteCount)
        }
        return order.map { ($0, acc[$0]!.0, acc[$0]!.1, acc[$0]!.2) }
    }

    /// Bytes actually stored: each storage once.
    private var storedBytes: Int {
        var seen = Set<ObjectIdentifier>()
        var n = 0
        for r in rows where seen.insert(ObjectIdentifier(r.tensor.storage)).inserted { n += r.tensor.storage.byteCount }
        return n
    }

    private func count(_ kind: String) -> (tensors: Int, elements: Int) {
        // no filtered copy of the rows: it held every row a second time (40 MB at 100,000 tensors)
        var n = 0, elements = 0
        for r in rows where r.kind == kind {
            n += 1
            elements += r.tensor.elementCount
        }
        return (n, elements)
    }

    private var formatLine: String {
        var parts = [info.format.rawValue]
        if let p = info.archivePrefix { parts.append("archive prefix '\(p)'") }
        parts.append(info.byteOrder == .little ? "little-endian" : "big-endian")
        if let p = info.pickleProtocol { parts.append("pickle protocol \(p)") }
        if let v = info.archiveVersion { parts.append("version \(v)") }
        return parts.joined(separator: ", ")
    }

    /// The report for people; with `flush`, text is handed to it a megabyte at a time as it is
    /// made and the rest returned.
    func text(tree: Bool, flush: ((String) -> Void)? = nil) -> String {
        var out = TextLines(flush: flush)
        out.append("file          \(file)")
        out.append("format        \(formatLine)")
        if let a = info.assembledFrom { out.append("assembled     \(a)") }
        var loadable = info.isWeightsOnlyLoadable ? "yes" : "no"
        if !info.disallowedGlobals.isEmpty { loadable += " (references " + info.disallowedGlobals.map(\.description).joined(separator: ", ") + ")" }
        if !info.opcodesRejectedByTorch.isEmpty {
            loadable += " (" + info.opcodesRejectedByTorch.map { $0.contains(" ") ? $0 : "opcode \($0)" }.joined(separator: "; ") + ")"
        }
        if info.format == .tar || info.format == .torchscript { loadable += " (torch refuses \(info.format.rawValue) files with weights_only=True)" }
        out.append("weights_only  \(loadable)")
        var sd = located.rootPath.isEmpty ? "(root)" : "'\(located.rootPath)'"
        if located.isOptimizerState { sd = "none: an optimizer's state_dict() (per-parameter state and param_groups), no model weights" }
        if located.isPickledModule { sd += ", a whole pickled nn.Module (\(located.raw.count) state_dict tensors; `ckpt convert --salvage` writes them as a state dict)" }
        if let w = located.wrapperPrefix { sd += ", wrapper prefix '\(w)'" }
        out.append("state dict    \(sd)")
        if let v = lightningVersion {
            out.append("checkpoint    PyTorch Lightning" + (v.isEmpty ? "" : " \(v)") + " (model weights in 'state_dict'; optimizer, loops, callbacks beside them)")
        }
        let devs = devices
        if devs.contains(where: { $0.device != "cpu" }) {
            out.append("saved on      " + devs.map { "\($0.device) (\(CLI.plural($0.storages, "storage")))" }.joined(separator: ", ")
                + "; torch needs map_location='cpu' to load it without that GPU (ckpt reads it as CPU data)")
        }
        out.append("architecture  " + (architecture.map { "torchvision " + $0.summary } ?? "unknown"))
        if !info.metadata.isEmpty {
            out.append("metadata      " + info.metadata.map { "\($0.key)=\($0.value.count > 60 ? String($0.value.prefix(57)) + "..." : $0.value)" }.joined(separator: ", "))
        }
        for w in info.warnings + collisionWarnings { out.append("warning       \(w)") }
        if !meta.isEmpty {
            out.append("warning       \(CLI.plural(meta.count, "tensor")) saved from the meta device hold no values (a model saved before its weights were loaded?)")
        }
        out.append("")
        if tree {
            out.append(ModuleTree(rows.map { ($0.name, $0.tensor.elementCount) }).render())
            if rows.contains(where: { $0.stats != nil }) {
                out.append("")
                out.append(CLI.table(["key", "min", "max", "mean", "std", "nan", "inf", "zero"], rows.compactMap { r -> [String]? in
                    guard let s = r.stats else { return nil }
                    return [r.name.isEmpty ? "(root)" : r.name, s.min.map(CLI.number) ?? "-", s.max.map(CLI.number) ?? "-", s.mean.map(CLI.number) ?? "-",
                            s.std.map(CLI.number) ?? "-", String(s.nanCount), String(s.infCount), String(s.zeroCount)]
                }, right: [1, 2, 3, 4, 5, 6, 7]))
            }
        } else {
            var header = ["key", "dtype", "shape", "elements", "bytes", "kind"]
            if rows.contains(where: { !$0.sharedWith.isEmpty }) { header.append("shared-with") }
            if rows.contains(where: { $0.stats != nil }) { header += ["min", "max", "mean", "std", "nan", "inf", "zero"] }
            out.appendTable(header, rowCount: rows.count, right: [3, 4]) { i -> [String] in
                let r = rows[i]
                var c = [r.name.isEmpty ? "(root)" : r.name, r.tensor.dtype.rawValue, CLI.shape(r.tensor.shape),
                         CLI.grouped(r.tensor.elementCount), CLI.grouped(r.tensor.byteCount), r.kind]
                if header.contains("shared-with") { c.append(r.sharedWith.joined(separator: ",")) }
                if header.contains("min") {
                    if let s = r.stats {
                        c += [s.min.map(CLI.number) ?? "-", s.max.map(CLI.number) ?? "-", s.mean.map(CLI.number) ?? "-",
                              s.std.map(CLI.number) ?? "-", String(s.nanCount), String(s.infCount), String(s.zeroCount)]
                    } else {
                        c += Array(repeating: "-", count: 7)
                    }
                }
                return c
            }
        }
        out.append("")
        out.append("totals")
        for t in totals() {
            out.append("  \(t.dtype.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \(CLI.plural(t.count, "tensor")), \(CLI.plural(t.elements, "element")), \(CLI.bytes(t.bytes))")
        }
        let p = count("parameter"), b = count("buffer"), o = count("other")
        out.append("  parameters \(CLI.grouped(p.elements)) in \(CLI.plural(p.tensors, "tensor")); buffers \(CLI.grouped(b.elements)) in \(CLI.plural(b.tensors, "tensor"))" + (o.tensors > 0 ? "; other \(CLI.grouped(o.elements)) in \(CLI.plural(o.tensors, "tensor"))" : ""))
        out.append("  stored \(CLI.bytes(storedBytes)) in \(CLI.plural(Set(rows.map { ObjectIdentifier($0.tensor.storage) }).count, "storage"))")
        let quantized = rows.filter { $0.tensor.quantization != nil }
        if !quantized.isEmpty {
            out.append("")
            out.append("quantized (values are (q - zero_point) * scale)")
            for r in quantized.prefix(40) {
                out.append("  \(r.name.isEmpty ? "(root)" : r.name)  \(r.tensor.dtype.rawValue) \(Self.summary(r.tensor.quantization!))")
            }
            if quantized.count > 40 { out.append("  ... \(quantized.count - 40) more (see --json)") }
        }
        if !sparse.isEmpty {
            out.append("")
            out.append("sparse tensors (indices checked as torch.load checks them)")
            for (p, t, st) in sparse.prefix(40) {
                var line = "  \(p.isEmpty ? "(root)" : p)  \(t.summary)"
                if let c = t.isCoalesced { line += c ? ", coalesced" : ", not coalesced" }
                if t.isParameter { line += ", Parameter" }
                line += "; " + zip(Self.sparsePartNames(t), t.parts).map { "\($0) \($1.dtype.rawValue) \(CLI.shape($1.shape))" }.joined(separator: ", ")
                line += "; \(CLI.bytes(t.storedBytes)) stored"
                if let st {
                    line += "; stored values min \(st.min.map(CLI.number) ?? "-") max \(st.max.map(CLI.number) ?? "-") mean \(st.mean.map(CLI.number) ?? "-")"
                }
                out.append(line)
            }
            if sparse.count > 40 { out.append("  ... \(sparse.count - 40) more (see --json)") }
        }
        if !meta.isEmpty {
            out.append("")
            out.append("meta tensors (saved from torch's meta device: shapes only, no values; torch loads them as meta tensors)")
            for (p, t) in meta.prefix(40) {
                out.append("  \(p.isEmpty ? "(root)" : p)  \(t.dtype.rawValue) \(CLI.shape(t.shape))" + (t.isParameter ? ", Parameter" : ""))
            }
            if meta.count > 40 { out.append("  ... \(meta.count - 40) more (see --json)") }
        }
        if !nonTensors.isEmpty {
            out.append("")
            out.append("other values")
            let folded = foldedValues
            for (p, v) in folded.prefix(40) { out.append("  \(p.isEmpty ? "(root)" : p) = \(v)") }
            if folded.count > 40 { out.append("  ... \(folded.count - 40) more (see --json)") }
            if omittedValues > 0 { out.append("  ... and \(CLI.grouped(omittedValues)) values past the first \(CLI.grouped(Self.maxValues)), not listed") }
        }
        return out.text
    }

    /// torch's names for a sparse tensor's parts (`t.indices()`, `t.crow_indices()` …).
    static func sparsePartNames(_ t: SparseTensor) -> [String] {
        switch t.layout {
        case .coo: return ["indices", "values"]
        case .csr, .bsr: return ["crow_indices", "col_indices", "values"]
        case .csc, .bsc: return ["ccol_indices", "row_indices", "values"]
        }
    }

    /// One line on a quantized tensor's parameters: the scale and zero point, or the range of the
    /// per-channel ones.
    static func summary(_ q: Quantization) -> String {
        guard let (scales, zeroPoints) = try? q.parameters() else { return q.schemeName }
        func point(_ z: Double) -> String { z.rounded() == z && abs(z) < 1e15 ? String(Int(z)) : CLI.number(z) }
        switch q {
        case .perTensor: return "\(q.schemeName), scale \(CLI.number(scales[0])), zero point \(point(zeroPoints[0]))"
        case let .perChannel(_, _, axis):
            func range(_ v: [Double], _ show: (Double) -> String) -> String {
                guard let lo = v.min(), let hi = v.max() else { return "-" }
                return lo == hi ? show(lo) : "\(show(lo))..\(show(hi))"
            }
            return "\(q.schemeName), axis \(axis), \(scales.count) scales \(range(scales, CLI.number)), zero points \(range(zeroPoints, zeroPoints.allSatisfy { $0.rounded() == $0 } ? point : CLI.number))"
        }
    }

    /// A quantized tensor's parameters as `--json` gives them.
    static func json(_ q: Quantization) -> JSONValue {
        let (scales, zeroPoints) = (try? q.parameters()) ?? ([], [])
        switch q {
        case .perTensor(let scale, let zeroPoint):
            return .object([("scheme", .string(q.schemeName)), ("scale", .double(scale)), ("zero_point", .int(zeroPoint))])
        case let .perChannel(s, z, axis):
            return .object([("scheme", .string(q.schemeName)), ("axis", .int(axis)),
                            ("scales_dtype", .string(s.dtype.rawValue)), ("scales", .array(scales.map { .double($0) })),
                            ("zero_points_dtype", .string(z.dtype.rawValue)), ("zero_points", .array(zeroPoints.map { .double($0) }))])
        }
    }

    func json(tree: Bool) -> JSONValue {
        var tensors: [JSONValue] = []
        for r in rows {
            let t = r.tensor
            var o: [(key: String, value: JSONValue)] = [
                ("name", .string(r.name)), ("dtype", .string(t.dtype.rawValue)),
                ("shape", .array(t.shape.map { .int($0) })), ("stride", .array(t.strides.map { .int($0) })),
                ("storage_offset", .int(t.storageOffset)), ("storage_key", .string(t.storage.key)),
                ("elements", .int(t.elementCount)), ("bytes", .int(t.byteCount)), ("kind", .string(r.kind)),
                ("contiguous", .bool(t.isContiguous)), ("requires_grad", .bool(t.requiresGrad)),
                ("is_parameter", .bool(t.isParameter)), ("device", .string(t.storage.location.isEmpty ? "cpu" : t.storage.location)),
                ("shared_with", .array(r.sharedWith.map { .string($0) })),
            ]
            if let q = t.quantization { o.append(("quantization", Self.json(q))) }
            if t.isConjugated { o.append(("conj", .bool(true))) }
            if t.isNegated { o.append(("neg", .bool(true))) }
            if let s = r.stats {
                o.append(("stats", .object([
                    ("min", s.min.map(JSONValue.double) ?? .null), ("max", s.max.map(JSONValue.double) ?? .null),
                    ("mean", s.mean.map(JSONValue.double) ?? .null), ("std", s.std.map(JSONValue.double) ?? .null),
                    ("nan", .int(s.nanCount)), ("inf", .int(s.infCount)), ("zero", .int(s.zeroCount)),
                ])))
            }
            tensors.append(.object(o))
        }
        let p = count("parameter"), b = count("buffer"), o = count("other")
        var byDType: [(key: String, value: JSONValue)] = []
        for t in totals() {
            byDType.append((t.dtype.rawValue, .object([("tensors", .int(t.count)), ("elements", .int(t.elements)), ("bytes", .int(t.bytes))])))
        }
        var obj: [(key: String, value: JSONValue)] = [
            ("file", .string(file)), ("format", .string(info.format.rawValue)),
            ("assembled_from", info.assembledFrom.map(JSONValue.string) ?? .null),
            ("archive_prefix", info.archivePrefix.map(JSONValue.string) ?? .null),
            ("byte_order", .string(info.byteOrder.rawValue)),
            ("pickle_protocol", info.pickleProtocol.map(JSONValue.int) ?? .null),
            ("archive_version", info.archiveVersion.map(JSONValue.int) ?? .null),
            ("weights_only_loadable", .bool(info.isWeightsOnlyLoadable)),
            // storages saved on a GPU: torch.load needs map_location='cpu' on a machine without it
            ("needs_map_location", .bool(devices.contains { $0.device != "cpu" })),
            ("globals", .array(info.globals.map { .string($0.description) })),
            ("disallowed_globals", .array(info.disallowedGlobals.map { .string($0.description) })),
            ("opcodes_rejected_by_torch", .array(info.opcodesRejectedByTorch.map { .string($0) })),
            ("warnings", .array((info.warnings + collisionWarnings).map { .string($0) })),
            ("state_dict_root", .string(located.rootPath)),
            ("wrapper_prefix", located.wrapperPrefix.map(JSONValue.string) ?? .null),
            ("pickled_module", .bool(located.isPickledModule)),
            ("lightning_version", lightningVersion.map(JSONValue.string) ?? .null),
            ("devices", .object(devices.map { ($0.device, .int($0.storages)) })),
            ("architecture", architecture.map { a in .object([
                ("name", .string(a.name)), ("num_classes", a.numClasses.map(JSONValue.int) ?? .null),
                ("input_channels", a.inputChannels.map(JSONValue.int) ?? .null),
            ]) } ?? .null),
            ("tensors", .array(tensors)),
            ("totals", .object([
                ("by_dtype", .object(byDType)),
                ("parameters", .object([("tensors", .int(p.tensors)), ("elements", .int(p.elements))])),
                ("buffers", .object([("tensors", .int(b.tensors)), ("elements", .int(b.elements))])),
                ("other", .object([("tensors", .int(o.tensors)), ("elements", .int(o.elements))])),
                ("stored_bytes", .int(storedBytes)),
            ])),
            ("values", .array(nonTensors.map { p, v in
                if let items = v.sequenceValue, items.count > Self.longSequence {
                    // the whole run, up to a million items
                    return .object([("path", .string(p)), ("type", .string(v.typeName)), ("items", .int(items.count)),
                                    ("value", .array(items.prefix(1_000_000).map(CLI.json)))])
                }
                return .object([("path", .string(p)), ("type", .string(v.typeName)), ("value", CLI.json(v))])
            })),
            ("values_not_listed", .int(omittedValues)),
            ("meta_tensors", .array(meta.map { p, t in
                .object([("name", .string(p)), ("dtype", .string(t.dtype.rawValue)), ("shape", .array(t.shape.map { .int($0) })),
                         ("stride", .array(t.strides.map { .int($0) })), ("requires_grad", .bool(t.requiresGrad)),
                         ("is_parameter", .bool(t.isParameter))])
            })),
            ("sparse_tensors", .array(sparse.map { p, t, st in
                var o: [(key: String, value: JSONValue)] = [
                    ("name", .string(p)), ("layout", .string(t.layout.rawValue)), ("dtype", .string(t.dtype.rawValue)),
                    ("shape", .array(t.size.map { .int($0) })), ("nnz", .int(t.nnz)),
                    ("is_coalesced", t.isCoalesced.map(JSONValue.bool) ?? .null),
                    ("is_parameter", .bool(t.isParameter)), ("requires_grad", .bool(t.requiresGrad)),
                    ("stored_bytes", .int(t.storedBytes)),
                    ("parts", .array(zip(Self.sparsePartNames(t), t.parts).map { n, x in
                        .object([("name", .string(n)), ("dtype", .string(x.dtype.rawValue)), ("shape", .array(x.shape.map { .int($0) })),
                                 ("storage_key", .string(x.storage.key))])
                    })),
                ]
                if let st {
                    o.append(("values_stats", .object([
                        ("min", st.min.map(JSONValue.double) ?? .null), ("max", st.max.map(JSONValue.double) ?? .null),
                        ("mean", st.mean.map(JSONValue.double) ?? .null), ("std", st.std.map(JSONValue.double) ?? .null),
                        ("nan", .int(st.nanCount)), ("inf", .int(st.infCount)), ("zero", .int(st.zeroCount)),
                    ])))
                }
                return .object(o)
            })),
        ]
        if !info.metadata.isEmpty {
            obj.append(("metadata", .object(info.metadata.map { ($0.key, .string($0.value)) })))
        }
        if tree {
            obj.append(("tree", ModuleTree(rows.map { ($0.name, $0.tensor.elementCount) }).json()))
        }
        return .object(obj)
    }
}
