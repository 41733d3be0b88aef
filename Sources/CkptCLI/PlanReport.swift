import CkptFormat
import CkptSurgery
import CkptTensor
import CkptTrain
import Foundation

/// The one formatter of a `MatchPlan`: text for people, JSON for tools and the plan file.
enum PlanReport {
    /// One line per kind of problem in a load plan: shape mismatches with both shapes, missing
    /// keys, unexpected keys, and (when `partial` is set) modules skipped because they did not fit whole.
    static func loadProblems(_ plan: MatchPlan, includingPartialModules partial: Bool) -> [String] {
        func list(_ items: [String]) -> String {
            items.prefix(6).joined(separator: ", ") + (items.count > 6 ? ", … (\(items.count) in all)" : "")
        }
        func count(_ n: Int, _ noun: String, _ plural: String? = nil) -> String {
            "\(n) " + (n == 1 ? noun : plural ?? noun + "s")
        }
        func shape(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }
        var lines: [String] = []
        let mismatched = plan.mismatched
        if !mismatched.isEmpty {
            lines.append(count(mismatched.count, "shape mismatch", "shape mismatches") + ": " + list(mismatched.map { e in
                if case let .mismatch(_, s) = e.action { return "\(e.spec.key) model \(shape(e.spec.shape)) checkpoint \(shape(s))" }
                return e.spec.key
            }))
        }
        if !plan.missing.isEmpty { lines.append(count(plan.missing.count, "missing key") + ": " + list(plan.missing.map(\.spec.key))) }
        let unexpected = plan.unused.filter { $0.reason == MatchPlan.Unused.noSuchKey }
        if !unexpected.isEmpty {
            lines.append(count(unexpected.count, "unexpected key") + ": " + list(unexpected.map { "\($0.key) \(shape($0.shape))" }))
        }
        let skipped = plan.reinitialized
        if partial, !skipped.isEmpty {
            lines.append(count(skipped.count, "tensor") + " of modules that do not fit whole not loaded: " + list(skipped.map { e in
                if case let .reinitialize(r) = e.action { return "\(e.spec.key) (\(r.text))" }
                return e.spec.key
            }))
        }
        return lines
    }

    /// The plan's entries, unused keys, coverage, casts and proof as JSON members.
    static func members(_ plan: MatchPlan, casts: [CastReport], checks: [BlockCheck]) -> [(key: String, value: JSONValue)] {
        func shape(_ s: [Int]) -> JSONValue { .array(s.map { .int($0) }) }
        func rule(_ e: MatchPlan.Entry) -> JSONValue { e.rule.map { .string($0) } ?? .string("same key") }
        var copied: [JSONValue] = [], adapted: [JSONValue] = [], reinit: [JSONValue] = [], filled: [JSONValue] = []
        var missing: [JSONValue] = [], mismatched: [JSONValue] = []
        for e in plan.entries {
            switch e.action {
            case let .copy(from):
                copied.append(.object([("from", .string(from)), ("to", .string(e.spec.key)), ("rule", rule(e))]))
            case let .adapt(from, how):
                adapted.append(.object([("from", .string(from)), ("to", .string(e.spec.key)), ("how", .string(how.text)), ("rule", rule(e))]))
            case .fill:
                filled.append(.object([("key", .string(e.spec.key)), ("value", .int(0))]))
            case let .reinitialize(r):
                reinit.append(.object([("key", .string(e.spec.key)), ("shape", shape(e.spec.shape)), ("reason", .string(r.text)),
                                       ("requested", .bool(r.isRequested))]))
            case .missing:
                missing.append(.object([("key", .string(e.spec.key)), ("shape", shape(e.spec.shape))]))
            case let .mismatch(from, s):
                mismatched.append(.object([("key", .string(e.spec.key)), ("from", .string(from)), ("source_shape", shape(s)),
                                           ("target_shape", shape(e.spec.shape))]))
            }
        }
        let coverage = plan.coverage
        func coverageJSON(_ c: MatchPlan.Coverage) -> JSONValue {
            .object([("block", .string(c.block)), ("tensors", .int(c.tensors)), ("covered_tensors", .int(c.coveredTensors)),
                     ("bytes", .int(c.bytes)), ("covered_bytes", .int(c.coveredBytes)), ("percent", .double((c.fraction * 1000).rounded() / 10))])
        }
        let total = MatchPlan.Coverage(block: "", tensors: coverage.reduce(0) { $0 + $1.tensors },
                                       coveredTensors: coverage.reduce(0) { $0 + $1.coveredTensors },
                                       bytes: coverage.reduce(0) { $0 + $1.bytes }, coveredBytes: coverage.reduce(0) { $0 + $1.coveredBytes })
        return [
            ("rules", .array(plan.rules.map { .object([("rule", .string($0.text)), ("flag", .string($0.flag)), ("origin", .string($0.originText))]) })),
            ("notes", .array(plan.notes.map { .string($0) })),
            ("uncovered_values", .string(plan.keepsTargetValues ? "template" : "fresh")),
            ("copied", .array(copied)), ("adapted", .array(adapted)), ("reinitialized", .array(reinit)), ("filled", .array(filled)),
            ("missing", .array(missing)),
            ("unused", .array(plan.unused.map { .object([("key", .string($0.key)), ("shape", shape($0.shape)), ("reason", .string($0.reason))]) })),
            ("mismatched", .array(mismatched)),
            ("coverage", .object([("blocks", .array(coverage.map(coverageJSON))), ("total", coverageJSON(total))])),
            ("casts", .array(casts.map { .object([("key", .string($0.key)), ("from", .string($0.from.rawValue)), ("to", .string($0.to.rawValue)),
                                                  ("max_abs_error", .double($0.maxAbsError))]) })),
            ("verification", .array(checks.map { c in
                .object([("block", .string(c.block)), ("source", .string(c.source)),
                         ("max_abs_diff", c.maxAbsDiff.map { .double($0) } ?? .null),
                         ("input_shape", shape(c.inputShape)), ("note", c.note.map { .string($0) } ?? .null),
                         ("max_abs_diff_after_cast", c.maxAbsDiffAfterCast.map { .double($0) } ?? .null),
                         ("passed", .bool(c.passes(tolerance: TransplantProof.tolerance)))])
            })),
        ]
    }

    /// One line per target module (one per tensor where a module's tensors fare differently).
    static func moduleLines(_ plan: MatchPlan) -> [[String]] {
        var rows: [[String]] = []
        var i = 0
        let entries = plan.entries
        while i < entries.count {
            let module = entries[i].spec.modulePath
            var j = i
            while j < entries.count, entries[j].spec.modulePath == module { j += 1 }
            let group = entries[i ..< j]
            let summaries = group.map { summary($0, keepsTargetValue: plan.keepsTargetValue($0)) }
            if Set(summaries.map(\.0)).count == 1 {
                rows.append([module.isEmpty ? "(top)" : module, CLI.plural(group.count, "tensor"), summaries[0].0, summaries[0].1])
            } else {
                for (e, s) in zip(group, summaries) { rows.append([e.spec.key, CLI.shape(e.spec.shape), s.0, s.1]) }
            }
            i = j
        }
        return rows
    }

    /// What happened to an entry, said for its module (`copied from features.3`), and the rule.
    static func summary(_ e: MatchPlan.Entry, keepsTargetValue: Bool = false) -> (String, String) {
        let rule = e.rule ?? ""
        let fresh = keepsTargetValue ? "the template's value" : "fresh value"
        switch e.action {
        case let .copy(from), let .adapt(from, _):
            let verb: String
            if case let .adapt(_, how) = e.action { verb = "adapted (\(how.text)) from" } else { verb = "copied from" }
            let sourceModule = StateDict.modulePath(of: from)
            return ("\(verb) \(sourceModule.isEmpty ? from : sourceModule)", rule)
        case .fill: return ("copied from the source; num_batches_tracked filled with 0", rule)
        case let .reinitialize(r): return (keepsTargetValue ? "the template's value: \(r.text)" : "re-initialised: \(r.text)", "")
        case .missing: return ("not in the source: \(fresh)", "")
        case let .mismatch(from, s): return ("mismatched (\(from) is \(CLI.shape(s))): \(fresh)", "")
        }
    }

    /// The plan for people: counts, every module, unused keys, coverage, casts, proof.
    static func text(_ plan: MatchPlan, casts: [CastReport], checks: [BlockCheck]) -> String {
        var out: [String] = []
        let requested = plan.reinitialized.filter { if case let .reinitialize(r) = $0.action { return r.isRequested } else { return false } }.count
        out.append("plan: \(plan.copied.count) copied, \(plan.adapted.count) adapted, \(plan.reinitialized.count) re-initialised (\(requested) asked for), "
            + "\(plan.missing.count) missing, \(plan.mismatched.count) mismatched; \(CLI.plural(plan.unused.count, "source tensor")) unused")
        out.append("")
        out.append(CLI.table(["target", "", "what", "rule"], moduleLines(plan)))
        if !plan.unused.isEmpty {
            out.append("")
            out.append("unused source tensors:")
            var modules: [(String, Int, String)] = []
            for u in plan.unused {
                let m = StateDict.modulePath(of: u.key)
                if let last = modules.last, last.0 == m, last.2 == u.reason { modules[modules.count - 1].1 += 1 } else { modules.append((m, 1, u.reason)) }
            }
            for (m, n, why) in modules.prefix(30) { out.append("  \(m.isEmpty ? "(top)" : m) (\(CLI.plural(n, "tensor"))): \(why)") }
            if modules.count > 30 { out.append("  … \(modules.count - 30) more modules (--json lists every key)") }
        }
        out.append("")
        out.append("coverage:")
        out.append(CLI.table(["block", "tensors", "covered", "size", "covered %"], plan.coverage.map { c in
            [c.block, String(c.tensors), String(c.coveredTensors), CLI.bytes(c.bytes), String(format: "%.1f", c.fraction * 100)]
        }, right: [1, 2, 3, 4]).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        let lossy = casts.filter(\.isLossy)
        if !casts.isEmpty {
            out.append("")
            out.append("casts: \(CLI.plural(casts.count, "tensor")) (\(lossy.count) lossy)"
                + (lossy.isEmpty ? "" : "; worst rounding \(String(format: "%.3g", lossy.map(\.maxAbsError).max() ?? 0)) at \(lossy.max { $0.maxAbsError < $1.maxAbsError }?.key ?? "")"))
        }
        if !checks.isEmpty {
            out.append("")
            out.append("proof (eval mode, same seeded inputs):")
            for c in checks {
                let diff = c.maxAbsDiff.map { "max|Δ| " + ($0 == 0 ? "0" : String(format: "%.3g", $0)) } ?? "not run"
                let verdict = c.maxAbsDiff == nil ? "" : (c.passes(tolerance: TransplantProof.tolerance) ? "" : "  FAILED (> 1e-5)")
                let cast = c.maxAbsDiffAfterCast.map { String(format: "; after the cast %.3g", $0) } ?? ""
                out.append("  \(c.block) ← \(c.source): \(diff)\(cast)\(verdict)" + (c.note.map { "  (\($0))" } ?? ""))
            }
        }
        return out.joined(separator: "\n")
    }
}

extension TransplantJob {
    /// The whole report: source, target, rules, the plan, casts, proof, output.
    func report(_ c: Transplant, checks: [BlockCheck], casts: [CastReport], output: String?) -> JSONValue {
        var head: [(key: String, value: JSONValue)] = [
            ("source", .string(c.source)),
            ("state_dict_root", .string(located.rootPath)),
            ("wrapper_prefix", located.wrapperPrefix.map { .string($0) } ?? .null),
            ("source_architecture", sourceArchitecture.map { .string($0.summary) } ?? .null),
        ]
        switch target {
        case let .zoo(name, n): head.append(("target", .object([("model", .string(name)), ("num_classes", .int(n))])))
        case let .template(p, _): head.append(("target", .object([("template", .string(p))])))
        }
        head += [("seed", .number(JSONNumber(c.seed))), ("dtype", .string(c.dtype)),
                 ("auto_proposals", .array(proposals.map { .object([("flag", .string($0.flag)), ("confidence", .double(confidence($0)))]) }))]
        return .object(head + PlanReport.members(plan, casts: casts, checks: checks) + [("output", output.map { .string($0) } ?? .null)])
    }

    /// Prints the plan for people.
    func printPlan(_ c: Transplant, checks: [BlockCheck], casts: [CastReport], written: String?) {
        var where_ = located.rootPath.isEmpty ? "" : " [\(located.rootPath)]"
        if let p = located.wrapperPrefix { where_ += " without '\(p)'" }
        print("source: \(c.source)\(where_): \(CLI.plural(located.raw.count, "tensor"))" + (sourceArchitecture.map { ", \($0.summary)" } ?? ""))
        print("target: \(target.name): \(CLI.plural(plan.entries.count, "tensor"))")
        for r in plan.rules { print("rule: \(r.text) (\(r.originText))") }
        for n in plan.notes { print("note: \(n)") }
        print(PlanReport.text(plan, casts: casts, checks: checks))
        if let w = written {
            print("")
            print("wrote \(w) (\(CheckpointWriter.format(forPath: w).rawValue)) and \(w).plan.json")
        } else if c.dryRun {
            print("")
            print("dry run: nothing written (would write \(c.outputPath))")
        }
    }
}
