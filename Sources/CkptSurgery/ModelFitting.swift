import CkptTensor

/// Fitting a checkpoint's state dict to a model known by its parameter specs: which keys to
/// offer (with or without the wrapper prefix), the class count the weights' head has, and the
/// plan of a plain load (no rules), which `forward`, `predict` and `finetune` share.
public enum ModelFitting {
    /// The state dict keyed for a model with `targetKeys`: without the wrapper prefix, unless the
    /// model's own keys carry it (a submodule really named `module`).
    public static func stateDict(_ located: LocatedStateDict, for targetKeys: [String]) -> StateDict {
        guard located.wrapperPrefix != nil else { return located.raw }
        let keys = Set(targetKeys.map(ExactKey.init))
        let unwrapped = located.stateDict
        let raw = located.raw
        return raw.filter { keys.contains(ExactKey($0.key)) }.count > unwrapped.filter { keys.contains(ExactKey($0.key)) }.count ? raw : unwrapped
    }

    /// The class count the weights' head has: the first dimension of the source tensor under a
    /// head key whose other dimensions agree with the target's, or nil when none does.
    public static func classCount(head: [ParameterSpec], in source: StateDict) -> Int? {
        for spec in head where spec.shape.count >= 1 {
            guard let got = source[spec.key]?.shape, got.count == spec.shape.count, got[0] >= 1,
                  got.dropFirst() == spec.shape.dropFirst() else { continue }
            return got[0]
        }
        return nil
    }

    /// The plan of `load_state_dict`: every key by name and shape, modules taken whole,
    /// `num_batches_tracked` filled where an older checkpoint lacks it.
    /// - Throws: never for a plan without rules; typed for the signature's sake.
    public static func loadPlan(_ source: StateDict, into target: [ParameterSpec]) throws -> MatchPlan {
        try Planner.plan(source: source.shapes, target: target, rules: [])
    }

    /// One line per kind of problem in a load plan: shape mismatches with both shapes, missing
    /// keys, unexpected keys, and (when `partial` is set) modules skipped because they did not fit whole.
    public static func problems(_ plan: MatchPlan, includingPartialModules partial: Bool) -> [String] {
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
}
