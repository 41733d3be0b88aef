import ArgumentParser
import CkptFormat
import CkptSurgery
import CkptTensor

/// `ckpt diff A B`: what differs between two checkpoints, tensor by tensor.
struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two checkpoints: keys only in one, dtype/shape changes, max |a-b| per common tensor.",
        discussion: """
            Exit status is 0 when equal, 1 when different, 2 on error, like diff(1). Tensors are compared by dotted path, \
            bit for bit unless --atol or --rtol is given: then a tensor is equal when every element has \
            |a - b| <= atol + rtol * |b| (torch.allclose's rule; a tolerance not given is 0; NaN equals NaN). Other \
            values (epoch, learning rate, architecture name, config) are compared too, exactly; --tensors-only skips them.
            """)

    @Argument(help: "First checkpoint.")
    var a: String

    @Argument(help: "Second checkpoint.")
    var b: String

    @Option(name: .long, help: "Absolute tolerance: |a-b| <= atol + rtol*|b| element by element counts as equal.")
    var atol: Double?

    @Option(name: .long, help: "Relative tolerance (torch.allclose's rtol), with --atol or alone.")
    var rtol: Double?

    @Flag(name: .long, help: "Compare tensors only, not the other values (epoch, lr, config).")
    var tensorsOnly = false

    @Flag(name: .long, help: "Compare only the model state dicts, found inside nested checkpoints, with wrapper prefixes (module., _orig_mod.) removed.")
    var stateDict = false

    @Flag(name: .long, help: "Print a JSON report.")
    var json = false

    /// The tensors to compare: every tensor by dotted path, or the unwrapped state dict.
    private func tensors(_ c: Checkpoint) -> [(path: String, tensor: Tensor)] {
        guard stateDict else { return c.tensors }
        let located = KeyAnalysis.locateStateDict(c)
        return located.stateDict.map { ($0.key, $0.tensor) }
    }

    @OptionGroup var read: ReadOptions

    /// A short digest of a sparse tensor's stored parts, so `diff` sees a change in its indices
    /// or values (it compares the parts' bytes, not the dense values they stand for).
    static func sparseDigest(_ t: SparseTensor) throws -> String {
        var h = SHA256()
        for part in t.parts {
            h.update(Array(part.dtype.rawValue.utf8) + part.shape.flatMap { withUnsafeBytes(of: Int64($0).littleEndian, Array.init) })
            try part.forEachContiguousChunk { h.update($0) }
        }
        return "sha256:" + h.finalizeHex().prefix(16)
    }

    /// Every non-tensor leaf by dotted path, as an exact text (floats by their bits' shortest form).
    static func values(_ c: Checkpoint) -> [(path: String, text: String)] {
        var out: [(String, String)] = []
        Checkpoint.walk(c.root, path: "") { p, v in
            switch v {
            case let .float(f): out.append((p, f.isNaN ? "nan" : "\(f)"))
            case .none, .bool, .int, .bigInt, .complex, .string, .bytes, .dtype, .device, .global, .reference:
                if case let .string(s) = v { out.append((p, "'" + s + "'")) } else { out.append((p, CLI.literal(v))) }
            case let .object(o): out.append((p, "<\(o.global)>"))
            case let .sparse(t): out.append((p, "<\(t.summary) " + ((try? sparseDigest(t)) ?? "unreadable") + ">"))
            case let .meta(t): out.append((p, "<\(t.summary) stride \(t.strides)\(t.requiresGrad ? " requires_grad" : "")>"))
            default: break
            }
        }
        return out
    }

    func run() throws {
        var different = false
        // chunk buffers come and go per tensor: each a mapping of its own, returned when freed
        CLI.returnLargeAllocations()
        try CLI.run {
            let ca = try CLI.load(a, read), cb = try CLI.load(b, read)
            let ta = tensors(ca), tb = tensors(cb)
            // the other values: only in one, or changed
            var valueChanges: [(path: String, a: String?, b: String?)] = []
            if !tensorsOnly && !stateDict {
                let va = Diff.values(ca), vb = Diff.values(cb)
                let mb = Dictionary(vb.map { (ExactKey($0.path), $0.text) }, uniquingKeysWith: { x, _ in x })
                let ma = Dictionary(va.map { (ExactKey($0.path), $0.text) }, uniquingKeysWith: { x, _ in x })
                for (p, t) in va where mb[ExactKey(p)] != t { valueChanges.append((p, t, mb[ExactKey(p)])) }
                for (p, t) in vb where ma[ExactKey(p)] == nil { valueChanges.append((p, nil, t)) }
            }
            var mapB: [ExactKey: Tensor] = [:]
            for (p, t) in tb { mapB[ExactKey(p)] = t }
            let keysA = Set(ta.map { ExactKey($0.path) })
            let onlyA = ta.map(\.path).filter { mapB[ExactKey($0)] == nil }
            let onlyB = tb.map(\.path).filter { !keysA.contains(ExactKey($0)) }
            // two tensors of one file under one dotted path ({'a.b': x, 'a': {'b': y}}): never one hiding the other
            for (file, list) in [(a, ta), (b, tb)] {
                var seen = Set<ExactKey>()
                if let dup = list.first(where: { !seen.insert(ExactKey($0.path)).inserted }) {
                    throw FormatError(.corrupt, file: file, member: dup.path, "two tensors have the dotted path '\(dup.path)' ({'a.b': x, 'a': {'b': y}}); compare them with --json from inspect instead")
                }
            }
            var changed: [(String, String)] = []
            var rows: [(name: String, diff: TensorDifference)] = []
            let progress = Progress("comparing", total: ta.count)
            for (i, (p, x)) in ta.enumerated() {
                guard let y = mapB[ExactKey(p)] else { continue }
                if x.dtype != y.dtype || x.shape != y.shape {
                    changed.append((p, "\(x.dtype.rawValue) \(CLI.shape(x.shape)) -> \(y.dtype.rawValue) \(CLI.shape(y.shape))"))
                    // a dtype change alone still compares by value (max |a-b| of a float16 cast)
                    guard x.shape == y.shape, x.dtype.isComplex == y.dtype.isComplex else { continue }
                }
                do {
                    let tolerance = atol != nil || rtol != nil ? (rtol: rtol ?? 0, atol: atol ?? 0) : nil
                    rows.append((p, try TensorDifference.compare(x, y, tolerance: tolerance)))
                } catch {
                    throw FormatError(.corrupt, file: "\(a) / \(b)", member: p, "\(error)")
                }
                // the comparison read both tensors chunk by chunk (pread, or a gather whose mapped
                // pages it dropped); a storage inflated into memory for it is dropped here
                for t in [x, y] { t.storage.evict() }
                progress.update(i + 1)
            }
            progress.finish()
            func equal(_ d: TensorDifference) -> Bool {
                if d.identical { return true }
                guard atol != nil || rtol != nil, d.nanMismatches == 0, !d.maxAbsolute.isNaN else { return false }
                return d.outsideTolerance == 0
            }
            let differing = rows.filter { !equal($0.diff) }
            different = !onlyA.isEmpty || !onlyB.isEmpty || !changed.isEmpty || !differing.isEmpty || !valueChanges.isEmpty
            if json {
                CLI.printJSON(.object([
                    ("a", .string(a)), ("b", .string(b)), ("equal", .bool(!different)),
                    ("only_in_a", .array(onlyA.map { .string($0) })), ("only_in_b", .array(onlyB.map { .string($0) })),
                    ("changed", .array(changed.map { .object([("name", .string($0.0)), ("change", .string($0.1))]) })),
                    ("tensors", .array(rows.map { r in .object([
                        ("name", .string(r.name)), ("equal", .bool(equal(r.diff))), ("identical", .bool(r.diff.identical)),
                        ("max_abs_diff", .double(r.diff.maxAbsolute)), ("differing_elements", .int(r.diff.differingElements)),
                        ("nan_mismatches", .int(r.diff.nanMismatches)), ("outside_tolerance", .int(r.diff.outsideTolerance)),
                    ]) })),
                    ("values", .array(valueChanges.map { .object([("path", .string($0.path)), ("a", $0.a.map { .string($0) } ?? .null),
                                                                  ("b", $0.b.map { .string($0) } ?? .null)]) })),
                ]))
            } else {
                for k in onlyA { print("only in \(a): \(k)") }
                for k in onlyB { print("only in \(b): \(k)") }
                for (k, c) in changed { print("changed: \(k): \(c)") }
                for v in valueChanges {
                    switch (v.a, v.b) {
                    case let (x?, y?): print("value: \(v.path.isEmpty ? "(root)" : v.path): \(x) -> \(y)")
                    case let (x?, nil): print("value only in \(a): \(v.path) = \(x)")
                    case let (nil, y?): print("value only in \(b): \(v.path) = \(y)")
                    default: break
                    }
                }
                if !differing.isEmpty {
                    print(CLI.table(["key", "max |a-b|", "differing", "nan mismatches"],
                                    differing.map { [$0.name, CLI.number($0.diff.maxAbsolute), CLI.grouped($0.diff.differingElements), String($0.diff.nanMismatches)] },
                                    right: [1, 2, 3]))
                }
                let same = rows.count - differing.count
                print(different
                    ? "different: \(onlyA.count) only in A, \(onlyB.count) only in B, \(changed.count) changed, \(differing.count) of \(rows.count) common tensors differ"
                        + (valueChanges.isEmpty ? "" : ", \(CLI.plural(valueChanges.count, "other value")) differ")
                    : "equal: \(same) tensors" + (atol != nil || rtol != nil ? " (within atol \(atol ?? 0), rtol \(rtol ?? 0))" : " (bit-identical)")
                        + (tensorsOnly || stateDict ? "" : ", other values equal"))
            }
        }
        if different { throw ExitCode(1) }
    }
}
