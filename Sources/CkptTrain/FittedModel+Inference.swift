import CkptNN
import CkptSurgery
import CkptTensor
import CkptZoo

extension FittedModel {
    /// Fits `weights` to the zoo model `name` for inference: every tensor taken as it is, nothing
    /// re-initialised (a fresh head would predict noise), the model left in eval mode. Any zoo
    /// model, segnet's two inputs included.
    ///
    /// The class count is `numClasses` when given, else the count the weights' head has
    /// (`fc.weight`'s rows, segnet's last convolution's outputs), else the zoo's default; a given
    /// count the head contradicts is refused with both counts.
    /// PyTorch counterpart: `model = models.resnet18(num_classes=n);
    /// model.load_state_dict(sd, strict=True); model.eval()`.
    /// - Throws: `ZooError` for an unknown model; `TrainingError.weightsDoNotFit` when a key is
    ///   missing, unexpected or of another shape (weights of another model), or the head holds
    ///   another class count than `numClasses`; `TrainingError.invalidOption` for a count below 1;
    ///   `NNError` / `TensorError` when a tensor cannot be read.
    public static func exact(model name: String, numClasses: Int? = nil, weights located: LocatedStateDict) throws -> FittedModel {
        let entry = try Zoo.entry(named: name)
        if let n = numClasses, n < 1 { throw TrainingError.invalidOption(option: "--num-classes", message: "must be positive, got \(n)") }
        let defaultSpecs = try Zoo.specification(entry.name).parameterSpecs
        let defaultHead = Set(try Zoo.headKeys(entry.name))
        let headSpecs = defaultSpecs.filter { defaultHead.contains($0.key) }
        let inferred = ModelFitting.classCount(head: headSpecs, in: ModelFitting.stateDict(located, for: defaultSpecs.map(\.key)))
        if let given = numClasses, let inferred, given != inferred {
            throw TrainingError.weightsDoNotFit(model: entry.name, problems: [
                "\(given) classes asked for, the weights' head (\(headSpecs.first?.key ?? "head")) has \(inferred)",
            ])
        }
        let n = numClasses ?? inferred ?? entry.defaultClassCount
        let specs = try Zoo.specification(entry.name, numClasses: n).parameterSpecs
        let source = ModelFitting.stateDict(located, for: specs.map(\.key))
        let plan = try ModelFitting.loadPlan(source, into: specs)
        guard plan.isExact else {
            var problems = FittedModel.problems(plan)
            if problems.isEmpty { problems = ["\(plan.entries.count - plan.copied.count - plan.filled.count) tensor(s) not taken as they are"] }
            throw TrainingError.weightsDoNotFit(model: entry.name, problems: problems)
        }
        let (state, _) = try plan.apply(source: source, initialValues: [:], dtype: .keep)
        let model = try Zoo.make(entry.name, numClasses: n, initialize: false)
        try model.load(stateDict: state, strictness: .strict)
        model.setTraining(false)
        return FittedModel(name: entry.name, numClasses: n, model: model, plan: plan, reinitializedKeys: [],
                           headKeys: try Zoo.headKeys(entry.name, numClasses: n), source: source)
    }
}
