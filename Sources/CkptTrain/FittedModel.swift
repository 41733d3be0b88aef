import CkptKernels
import CkptNN
import CkptSurgery
import CkptTensor
import CkptZoo

/// A zoo model holding weights fitted from a checkpoint through a `MatchPlan`, the plan
/// `forward` and `transplant` use: every key by name and shape, and a head of another class
/// count re-initialised as `ckpt transplant --num-classes` re-initialises it (torchvision's rule
/// for the model, seeded).
/// PyTorch counterpart: `model = models.resnet18(); model.load_state_dict(sd)` followed by the
/// tutorials' `model.fc = nn.Linear(num_ftrs, n)`.
public struct FittedModel {
    /// The zoo name (`resnet18`).
    public let name: String
    /// Classes of the model's head.
    public let numClasses: Int
    /// The model, in eval mode, every weight loaded.
    public let model: Module
    /// How each key was fitted: copied, filled, re-initialised.
    public let plan: MatchPlan
    /// Keys given fresh values by the fit (the head for another class count), in state-dict order.
    public let reinitializedKeys: [String]
    /// The keys of the model's head (`fc.*`, `classifier.6.*`, `model.8.*`).
    public let headKeys: [String]
    /// The source state dict as keyed for the model (what the plan copies from).
    let source: StateDict

    /// Fits `weights` to the zoo model `name` with `numClasses` outputs.
    /// - Throws: `ZooError` for an unknown model; `TrainingError.weightsDoNotFit` when anything but
    ///   the head is missing, mismatched or unexpected (weights of another model);
    ///   `NNError` /
    ///   `TensorError` when a tensor cannot be read.
    public static func fit(model name: String, numClasses: Int, weights located: LocatedStateDict, seed: UInt64) throws -> FittedModel {
        let entry = try Zoo.entry(named: name)
        let specs = try Zoo.specification(entry.name, numClasses: numClasses).parameterSpecs
        let source = ModelFitting.stateDict(located, for: specs.map(\.key))
        let heads = try Zoo.headKeys(entry.name, numClasses: numClasses)
        var options = TransplantOptions()
        options.headKeys = Set(heads)
        options.replaceHead = true
        let plan = try Planner.plan(source: source.shapes, target: specs, rules: [], options: options)
        let problems = FittedModel.problems(plan, heads: Set(heads))
        if !problems.isEmpty { throw TrainingError.weightsDoNotFit(model: entry.name, problems: problems) }

        let fresh = plan.entries.filter(\.needsInitialValue).map(\.spec.key)
        let initial = try Zoo.initialValues(entry.name, numClasses: numClasses, seed: seed, keys: fresh)
        let (state, _) = try plan.apply(source: source, initialValues: initial, dtype: .keep)
        let model = try Zoo.make(entry.name, numClasses: numClasses, initialize: false)
        try model.load(stateDict: state, strictness: .strict)
        return FittedModel(name: entry.name, numClasses: numClasses, model: model, plan: plan, reinitializedKeys: fresh,
                           headKeys: heads, source: source)
    }

    /// What stops a fit, one line per kind: shape mismatches with both shapes, missing keys,
    /// unexpected keys, modules that could not be taken whole. Empty when only the head is new.
    static func problems(_ plan: MatchPlan, heads: Set<String> = []) -> [String] {
        func list(_ items: [String]) -> String {
            items.prefix(4).joined(separator: ", ") + (items.count > 4 ? ", … (\(items.count) in all)" : "")
        }
        var lines: [String] = []
        let mismatched = plan.mismatched.map { e -> String in
            if case let .mismatch(_, s) = e.action { return "\(e.spec.key) model \(e.spec.shape) checkpoint \(s)" }
            return e.spec.key
        }
        if !mismatched.isEmpty { lines.append("\(mismatched.count) shape mismatch(es): " + list(mismatched)) }
        if !plan.missing.isEmpty { lines.append("\(plan.missing.count) missing key(s): " + list(plan.missing.map(\.spec.key))) }
        let unexpected = plan.unused.filter { $0.reason == MatchPlan.Unused.noSuchKey }.map(\.key)
        if !unexpected.isEmpty { lines.append("\(unexpected.count) unexpected key(s): " + list(unexpected)) }
        // a head's batch norm goes whole (segnet's dec1.decode.5, num_batches_tracked included)
        let partial = plan.reinitialized.filter { e in
            if case let .reinitialize(r) = e.action { return !r.isRequested && !heads.contains(e.spec.key) }
            return false
        }
        if !partial.isEmpty { lines.append("\(partial.count) tensor(s) of modules that do not fit whole: " + list(partial.map(\.spec.key))) }
        return lines
    }

    /// Checks that every tensor the plan took from the source is, in the model, bit for bit the
    /// source tensor (widened to float32 as the model holds it), and every filled counter is 0.
    /// - Returns: how many tensors were compared.
    /// - Throws: `TrainingError.sourceMismatch` naming the first tensor that differs.
    @discardableResult
    public func verifyAgainstSource() throws -> Int {
        let parameters = Dictionary(model.namedParameters().map { ($0.key, $0.parameter) }, uniquingKeysWith: { a, _ in a })
        var compared = 0
        for e in plan.entries {
            guard let p = parameters[e.spec.key] else { throw TrainingError.sourceMismatch(key: e.spec.key, source: "(not in the model)") }
            switch e.action {
            case let .copy(from):
                guard let t = source[from] else { throw TrainingError.sourceMismatch(key: e.spec.key, source: from) }
                let expected = try DenseTensor(t)
                if expected.shape != p.value.shape || !FrozenTensors.sameBits(expected.values, p.value.values) {
                    throw TrainingError.sourceMismatch(key: e.spec.key, source: from)
                }
                compared += 1
            case .fill:
                if p.value.values.contains(where: { $0 != 0 }) { throw TrainingError.sourceMismatch(key: e.spec.key, source: "(filled with 0)") }
                compared += 1
            default:
                continue
            }
        }
        return compared
    }

    /// Keys of the layers feature extraction trains: the re-initialised ones that are parameters,
    /// or the head's when the fit re-initialised nothing (weights a transplant already fitted).
    public var newLayerKeys: [String] {
        let parameterKeys = Set(model.namedParameters().filter { $0.parameter.role == .parameter }.map(\.key))
        let fresh = reinitializedKeys.filter { parameterKeys.contains($0) }
        return fresh.isEmpty ? headKeys.filter { parameterKeys.contains($0) } : fresh
    }
}
