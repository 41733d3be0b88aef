import CkptTensor

/// Runs several schedules one after another, switching at milestone epochs: the usual warm-up
/// (`LinearLR`) then decay (`CosineAnnealingLR`). At a milestone the next schedule starts from
/// its closed form at epoch 0 (its `base_lrs`), as torch's `_update_lr(0)` does.
/// Counterpart: `torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers, milestones)`.
public final class SequentialLR: LearningRateSchedule {
    /// The optimizer all the schedules set.
    public let optimizer: any Optimizer
    /// The schedules, in the order they run (`_schedulers`).
    public let schedules: [ChainableSchedule]
    /// The epochs at which the next schedule takes over (`_milestones`).
    public private(set) var milestones: [Int]
    /// Steps taken (`last_epoch`): 0 right after construction.
    public private(set) var lastEpoch: Int
    /// Every group's learning rate after the latest step (`get_last_lr()`).
    public private(set) var lastLearningRates: [Double]

    /// Takes over `schedules` (already made on `optimizer`, which set its rates): resets every
    /// group to its `initial_lr`, undoes the schedules' initial steps, and lets the first run its
    /// initial step again, exactly as torch's constructor does.
    /// - Throws: `OptimizerError.invalidHyperParameter` for no schedule, a schedule on another
    ///   optimizer, a milestone count other than `schedules.count - 1`, or unsorted milestones.
    public init(optimizer: any Optimizer, schedules: [ChainableSchedule], milestones: [Int]) throws {
        try SequentialLR.validate(schedules: schedules, milestones: milestones, optimizer: optimizer)
        self.optimizer = optimizer
        self.schedules = schedules
        self.milestones = milestones
        self.lastEpoch = 0
        for i in optimizer.groups.indices {
            optimizer.groups[i].learningRate = optimizer.groups[i].initialLearningRate ?? optimizer.groups[i].learningRate
        }
        for s in schedules { s.lastEpoch -= 1 }
        let first = schedules[SequentialLR.upperBound(milestones, 0)]
        try first.initialStep()
        lastLearningRates = first.lastLearningRates
    }

    private static func validate(schedules: [ChainableSchedule], milestones: [Int], optimizer: any Optimizer) throws {
        let context = "SequentialLR"
        guard !schedules.isEmpty else { throw OptimizerError(.invalidHyperParameter, context, "expects at least one schedule, got none") }
        for (i, s) in schedules.enumerated() where s.optimizer !== optimizer {
            throw OptimizerError(.invalidHyperParameter, context, "schedule \(i) (\(s.name)) sets another optimizer's rates")
        }
        guard milestones.count == schedules.count - 1 else {
            throw OptimizerError(.invalidHyperParameter, context,
                                 "expects one milestone fewer than schedules, got \(schedules.count) schedule(s) and \(milestones.count) milestone(s)")
        }
        guard milestones == milestones.sorted() else {
            throw OptimizerError(.invalidHyperParameter, context, "milestones must be in ascending order, got \(milestones)")
        }
    }

    /// Python's `bisect_right(a, x)`: how many of the sorted `a` are ≤ `x`.
    static func upperBound(_ a: [Int], _ x: Int) -> Int {
        var count = 0
        for m in a where m <= x { count += 1 }
        return count
    }

    /// Advances one epoch: at a milestone the next schedule restarts at its epoch 0, otherwise the
    /// running one steps. Counterpart: `scheduler.step()`.
    /// - Throws: `OptimizerError.stateMismatch` when the optimizer's group count changed.
    public func step() throws {
        lastEpoch += 1
        let index = SequentialLR.upperBound(milestones, lastEpoch)
        let schedule = schedules[index]
        if index > 0, milestones[index - 1] == lastEpoch {
            try schedule.update(toEpoch: 0)
        } else {
            try schedule.step()
        }
        lastLearningRates = schedule.lastLearningRates
    }

    /// The state in torch's layout: `_milestones`, `last_epoch`, `_last_lr`, then `_schedulers`
    /// holding each schedule's state dict. Counterpart: `scheduler.state_dict()`.
    public func stateDict() -> Value {
        .dict(PyDict(items: [
            (.string("_milestones"), .list(milestones.map { .int($0) })),
            (.string("last_epoch"), .int(lastEpoch)),
            (.string("_last_lr"), .list(lastLearningRates.map { .float($0) })),
            (.string("_schedulers"), .list(schedules.map { $0.stateDict() })),
        ]))
    }

    /// Restores a state torch or ckpt saved, each schedule's included; nothing changes unless
    /// all of it fits. Counterpart: `scheduler.load_state_dict(sd)`.
    /// - Throws: `OptimizerError.stateMismatch` for another number of schedules, milestones or
    ///   groups; `.malformedState`; `.invalidHyperParameter` for unsorted milestones.
    public func loadStateDict(_ value: Value) throws {
        let context = "SequentialLR state dict"
        let state = try ScheduleStateReader(value, context: context)
        var newMilestones = milestones
        if let m = state.dict["_milestones"] {
            guard let items = m.sequenceValue else {
                throw OptimizerError(.malformedState, "\(context): '_milestones'", "expected a list of ints, got \(m.typeName)")
            }
            newMilestones = try items.map {
                guard case let .int(i) = $0 else {
                    throw OptimizerError(.malformedState, "\(context): '_milestones'", "expected a list of ints, got a \($0.typeName) in it")
                }
                return i
            }
        }
        guard let saved = state.dict["_schedulers"]?.sequenceValue else {
            throw OptimizerError(.malformedState, context, "has no '_schedulers' list")
        }
        guard saved.count == schedules.count else {
            throw OptimizerError(.stateMismatch, "\(context): '_schedulers'", "holds \(saved.count) schedule(s), this SequentialLR has \(schedules.count)")
        }
        guard newMilestones.count == schedules.count - 1, newMilestones == newMilestones.sorted() else {
            throw OptimizerError(.stateMismatch, "\(context): '_milestones'",
                                 "expected \(schedules.count - 1) ascending milestone(s), got \(newMilestones)")
        }
        let epoch = try state.int("last_epoch") ?? lastEpoch
        let last = try state.doubles("_last_lr", count: optimizer.groups.count) ?? lastLearningRates
        // load every schedule into a copy of its state first, so that a bad one changes nothing
        let backups = schedules.map { $0.stateDict() }
        do {
            for (i, (s, v)) in zip(schedules, saved).enumerated() {
                do {
                    try s.loadStateDict(v)
                } catch let e as OptimizerError {
                    throw OptimizerError(e.kind, "\(context): _schedulers[\(i)]", e.message)
                }
            }
        } catch {
            for (s, b) in zip(schedules, backups) { try? s.loadStateDict(b) }
            throw error
        }
        milestones = newMilestones
        lastEpoch = epoch
        lastLearningRates = last
    }
}
