import CkptNN

/// What trains in each stage of a run and what it trains with: the selection, the optimizer and
/// the schedule, built the way a tutorial builds them at the start of a stage.
struct FineTuneStages {
    let options: FineTuneOptions
    let fitted: FittedModel

    /// Which parameters train in `stage`: the new layers for a head-only stage, otherwise what
    /// `--train`, `--freeze` and `--freeze-first` say (everything when they say nothing).
    /// - Throws: `TrainingError.invalidOption` when `--freeze-first` exceeds the model's modules.
    func selection(for stage: Stage) throws -> TrainableSelection {
        if stage.headOnly { return .only(fitted.newLayerKeys) }
        if !options.train.isEmpty { return .only(options.train) }
        let freeze = options.freeze + (try leadingModules(options.freezeFirst))
        return freeze.isEmpty ? .all : .freeze(freeze)
    }

    /// The paths of the first `count` modules that own parameters, in `named_modules()` order (a
    /// shared module counted once): the layers `--freeze-first N` freezes.
    /// - Throws: `TrainingError.invalidOption` when the model has fewer.
    func leadingModules(_ count: Int) throws -> [String] {
        guard count > 0 else { return [] }
        var seen = Set<ObjectIdentifier>()
        var paths: [String] = []
        for (path, m) in fitted.model.namedModules() where !path.isEmpty {
            guard m.ownParameters.contains(where: { $0.parameter.role == .parameter }), seen.insert(ObjectIdentifier(m)).inserted else { continue }
            paths.append(path)
        }
        guard count < paths.count else {
            throw TrainingError.invalidOption(option: "--freeze-first",
                                              message: "\(fitted.name) has \(paths.count) modules with parameters, so \(count) would freeze all of them; at most \(paths.count - 1)")
        }
        return Array(paths.prefix(count))
    }

    /// The optimizer over the parameters that train now, at the stage's learning rate.
    /// Counterpart: `optim.SGD(filter(lambda p: p.requires_grad, model.parameters()), lr, momentum, weight_decay)`.
    /// - Throws: `OptimizerError` for values torch refuses, or when nothing trains.
    func optimizer(for stage: Stage) throws -> any Optimizer {
        let decay = options.effectiveWeightDecay
        let groups = try parameterGroups(for: stage).map { g in
            ParameterGroup(parameters: g.parameters, learningRate: g.learningRate, weightDecay: decay,
                           momentum: options.optimizer == .sgd ? options.momentum : 0)
        }
        switch options.optimizer {
        case .sgd: return try SGD(groups: groups)
        case .adamw: return try AdamW(groups: groups)
        }
    }

    /// The trainable parameters of the stage (its selection applied) split as `--group-lr` asks:
    /// one group per name that holds trainable parameters, in the order given, then the rest at the
    /// stage's rate; every rate scaled as the stage scales `--lr`. torch:
    /// `SGD([{'params': …, 'lr': …}, …, {'params': rest}], lr=lr)`.
    /// - Throws: `TrainingError.unknownName` for a name the model does not have.
    func parameterGroups(for stage: Stage) throws -> [(parameters: [(key: String, parameter: Parameter)], learningRate: Double)] {
        let trainable = ParameterGroup.trainableParameters(of: fitted.model)
        guard !options.groupLearningRates.isEmpty else { return [(trainable, stage.learningRate)] }
        let all = fitted.model.namedParameters().filter { $0.parameter.role == .parameter }
        let scale = stage.learningRate / options.learningRate
        var taken = Set<ObjectIdentifier>()
        var groups: [(parameters: [(key: String, parameter: Parameter)], learningRate: Double)] = []
        for (name, rate) in options.groupLearningRates {
            guard all.contains(where: { TrainableSelection.covers(name, $0.key) }) else {
                let paths = fitted.model.namedModules().map(\.path).filter { !$0.isEmpty }
                throw TrainingError.unknownName(name: name, option: "--group-lr",
                                                closeMatches: TrainableSelection.closeMatches(name, paths + all.map(\.key)))
            }
            let members = trainable.filter { TrainableSelection.covers(name, $0.key) && taken.insert(ObjectIdentifier($0.parameter)).inserted }
            if !members.isEmpty { groups.append((members, rate * scale)) }
        }
        let rest = trainable.filter { !taken.contains(ObjectIdentifier($0.parameter)) }
        if !rest.isEmpty { groups.append((rest, stage.learningRate)) }
        return groups
    }

    /// The stage's schedule, stepped once per epoch: a linear warm-up from a tenth of the rate
    /// over `warmupEpochs`, then StepLR or cosine annealing over the rest of the stage; nil for a
    /// constant rate. Built in torch's order (the parts, then `SequentialLR` over them).
    /// - Throws: `OptimizerError` for settings torch refuses.
    func schedule(for stage: Stage, optimizer: any Optimizer) throws -> (any LearningRateSchedule)? {
        let warmup = min(options.warmupEpochs, stage.epochs)
        let warm: LinearLR? = warmup > 0 ? try LinearLR(optimizer: optimizer, startFactor: 0.1, endFactor: 1, totalIterations: warmup) : nil
        let decay: ChainableSchedule?
        switch options.schedule {
        case .none: decay = nil
        case .step: decay = try StepLR(optimizer: optimizer, stepSize: options.stepSize, gamma: options.gamma)
        case .cosine: decay = try CosineAnnealingLR(optimizer: optimizer, period: max(1, stage.epochs - warmup))
        }
        switch (warm, decay) {
        case let (w?, d?): return try SequentialLR(optimizer: optimizer, schedules: [w, d], milestones: [warmup])
        case let (w?, nil): return w
        case let (nil, d?): return d
        case (nil, nil): return nil
        }
    }
}
