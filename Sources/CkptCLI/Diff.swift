import ArgumentParser
import CkptFormat
import CkptSurgery
import CkptTensor

/// `ckpt diff A B`: what differs between two checkpoints, tensor by tensor.
struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two checkpoints: keys only in one, dtype/shape changes, max |a-b| per common tensor.",
        discussion: "Exit status is 0 when equal, 1 when different, 2 on error, like diff(1). Tensors are compared by dotted path; values compare bit for bit unless --atol is given.")

    @Argument(help: "First checkpoint.")
    var a: String

    @Argument(help: "Second checkpoint.")
    var b: String

    @Option(name: .long, help: "Treat tensors whose max |a-b| is at most this as equal.")
    var atol: Double?

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

    func run() throws {
        var different = false
        try CLI.run {
            let ca = try CLI.load(a, read), cb = try CLI.load(b, read)
            let ta = tensors(ca), tb = tensors(cb)
            var mapB: [String: Tensor] = [:]
            for (p, t) in tb { mapB[p] = t }
            let keysA = Set(ta.map(\.path))
            let onlyA = ta.map(\.path).filter { mapB[$0] == nil }
            let onlyB = tb.map(\.path).filter { !keysA.contains($0) }
            var changed: [(String, String)] = []
            var rows: [(name: String, diff: TensorDifference)] = []
            let progress = Progress("comparing", total: ta.count)
            for (i, (p, x)) in ta.enumerated() {
                guard let y = mapB[p] else { continue }
                if x.dtype != y.dtype || x.shape != y.shape {
                    changed.append((p, "\(x.dtype.rawValue) \(CLI.shape(x.shape)) -> \(y.dtype.rawValue) \(CLI.shape(y.shape))"))
                    // a dtype change alone still compares by value (max |a-b| of a float16 cast)
                    guard x.shape == y.shape, x.dtype.isComplex == y.dtype.isComplex else { continue }
                }
                do {
                    rows.append((p, try TensorDifference.compare(x, y)))
                } catch {
                    throw FormatError(.corrupt, file: "\(a) / \(b)", member: p, "\(error)")
                }
                x.storage.evict(); y.storage.evict()
                progress.update(i + 1)
            }
            progress.finish()
            func equal(_ d: TensorDifference) -> Bool {
                if d.identical { return true }
                guard let tol = atol, d.nanMismatches == 0, !d.maxAbsolute.isNaN else { return false }
                return d.maxAbsolute <= tol
            }
            let differing = rows.filter { !equal($0.diff) }
            different = !onlyA.isEmpty || !onlyB.isEmpty || !changed.isEmpty || !differing.isEmpty
            if json {
                CLI.printJSON(.object([
                    ("a", .string(a)), ("b", .string(b)), ("equal", .bool(!different)),
                    ("only_in_a", .array(onlyA.map { .string($0) })), ("only_in_b", .array(onlyB.map { .string($0) })),
                    ("changed", .array(changed.map { .object([("name", .string($0.0)), ("change", .string($0.1))]) })),
                    ("tensors", .array(rows.map { r in .object([
                        ("name", .string(r.name)), ("equal", .bool(equal(r.diff))), ("identical", .bool(r.diff.identical)),
                        ("max_abs_diff", .double(r.diff.maxAbsolute)), ("differing_elements", .int(r.diff.differingElements)),
                        ("nan_mismatches", .int(r.diff.nanMismatches)),
                    ]) })),
                ]))
            } else {
                for k in onlyA { print("only in \(a): \(k)") }
                for k in onlyB { print("only in \(b): \(k)") }
                for (k, c) in changed { print("changed: \(k): \(c)") }
                if !differing.isEmpty {
                    print(CLI.table(["key", "max |a-b|", "differing", "nan mismatches"],
                                    differing.map { [$0.name, CLI.number($0.diff.maxAbsolute), CLI.grouped($0.diff.differingElements), String($0.diff.nanMismatches)] },
                                    right: [1, 2, 3]))
                }
                let same = rows.count - differing.count
                print(different
                    ? "different: \(onlyA.count) only in A, \(onlyB.count) only in B, \(changed.count) changed, \(differing.count) of \(rows.count) common tensors differ"
                    : "equal: \(same) tensors" + (atol != nil ? " (within atol \(atol!))" : " (bit-identical)"))
            }
        }
        if different { throw ExitCode(1) }
    }
}
