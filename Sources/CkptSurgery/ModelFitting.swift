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
}
