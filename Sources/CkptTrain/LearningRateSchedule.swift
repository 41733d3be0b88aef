import CkptTensor

// Learning-rate schedules as torch.optim.lr_scheduler computes them: each `step()` derives the
// next rate of every group from the group's current rate (torch's recursive, "chainable" get_lr),
// in Python doubles and in torch's operation order, so the values are torch's to the last bit —
// not a closed form that agrees only to rounding. The caller decides whether a step is an epoch
// or an optimizer step, as in torch.

/// A schedule that sets its optimizer's learning rates. Counterpart:
/// `torch.optim.lr_scheduler.LRScheduler`.
public protocol LearningRateSchedule: AnyObject {
    /// The optimizer whose groups' learning rates the schedule sets.
    var optimizer: any Optimizer { get }
    /// Steps taken (`last_epoch`): 0 right after construction.
    var lastEpoch: Int { get }
    /// Every group's learning rate after the latest step (`get_last_lr()`).
    var lastLearningRates: [Double] { get }

    /// Advances one epoch (or step) and sets every group's learning rate. Counterpart:
    /// `scheduler.step()`, called after `optimizer.step()`.
    /// - Throws: `OptimizerError.stateMismatch` when the optimizer's group count changed.
    func step() throws

    /// The schedule's state in torch's `scheduler.state_dict()` layout. Counterpart:
    /// `scheduler.state_dict()`.
    func stateDict() -> Value

    /// Restores a state torch or ckpt saved (not the optimizer's rates: those come with the
    /// optimizer's state dict). Counterpart: `scheduler.load_state_dict(sd)`.
    /// - Throws: `OptimizerError.stateMismatch` for another group count, `.malformedState` for a
    ///   dict not laid out as torch's, `.invalidHyperParameter` for values the schedule refuses.
    func loadStateDict(_ value: Value) throws
}

/// The shared machinery of the chainable schedules (`StepLR`, `CosineAnnealingLR`, `LinearLR`):
/// torch's `LRScheduler` base with its `base_lrs`, `last_epoch`, `_step_count`, `_is_initial`
/// and `_last_lr`. Not instantiated on its own.
public class ChainableSchedule: LearningRateSchedule {
    /// The optimizer whose groups' learning rates the schedule sets.
    public let optimizer: any Optimizer
    /// Each group's `initial_lr` when the schedule was made (`base_lrs`).
    public internal(set) var baseLearningRates: [Double]
    /// Steps taken (`last_epoch`): 0 right after construction.
    public internal(set) var lastEpoch: Int
    /// Every group's learning rate after the latest step (`get_last_lr()`).
    public internal(set) var lastLearningRates: [Double] = []
    /// Calls of `step()`, the initial one included (`_step_count`).
    var stepCount = 0
    /// True during the step the constructor takes (`_is_initial`).
    var isInitial = false
    /// torch's name of the schedule, for messages.
    let name: String

    /// Attaches to `optimizer` as torch's constructor does with `last_epoch=-1`: every group
    /// without an `initial_lr` gets its current rate as one, `base_lrs` are those, and one
    /// initial step sets the epoch-0 rates. Subclasses set their own fields first.
    /// - Throws: `OptimizerError.stateMismatch` only if the groups change during the call.
    init(optimizer: any Optimizer, name: String) throws {
        for i in optimizer.groups.indices where optimizer.groups[i].initialLearningRate == nil {
            optimizer.groups[i].initialLearningRate = optimizer.groups[i].learningRate
        }
        self.optimizer = optimizer
        self.name = name
        self.baseLearningRates = optimizer.groups.map { $0.initialLearningRate ?? $0.learningRate }
        self.lastEpoch = -1
        try initialStep()
    }

    /// torch's `_initial_step`: resets the step count and steps once in initial mode.
    /// - Throws: as `step()`.
    func initialStep() throws {
        stepCount = 0
        isInitial = true
        defer { isInitial = false }
        try step()
    }

    /// Advances one epoch (or step) and sets every group's learning rate.
    /// Counterpart: `scheduler.step()`.
    /// - Throws: `OptimizerError.stateMismatch` when the optimizer's group count changed.
    public func step() throws {
        stepCount += 1
        try update(toEpoch: nil)
    }

    /// torch's `_update_lr`: the chainable rates of the next epoch, or the closed-form rates of
    /// `epoch` (what `SequentialLR` asks at a milestone), written into the groups.
    /// - Throws: `OptimizerError.stateMismatch` when the optimizer's group count changed.
    func update(toEpoch epoch: Int?) throws {
        guard optimizer.groups.count == baseLearningRates.count else {
            throw OptimizerError(.stateMismatch, name, "the optimizer has \(optimizer.groups.count) parameter group(s), the schedule was made for \(baseLearningRates.count)")
        }
        let values: [Double]
        if let epoch {
            lastEpoch = epoch
            values = closedFormLearningRates()
        } else {
            lastEpoch += 1
            values = chainedLearningRates(current: optimizer.learningRates)
        }
        for (i, lr) in values.enumerated() { optimizer.groups[i].learningRate = lr }
        lastLearningRates = optimizer.learningRates
    }

    /// torch's `get_lr()`: the rates of epoch `lastEpoch` from the groups' `current` rates.
    func chainedLearningRates(current: [Double]) -> [Double] { current }

    /// torch's `_get_closed_form_lr()`: the rates of epoch `lastEpoch` from `baseLearningRates`.
    func closedFormLearningRates() -> [Double] { baseLearningRates }

    /// The schedule's own settings, in the order its torch constructor sets them (`step_size`, `gamma`).
    func settingItems() -> [(String, Value)] { [] }

    /// Takes the settings a loaded state dict holds (absent keys keep their values).
    /// - Throws: `OptimizerError.malformedState` / `.invalidHyperParameter`.
    func loadSettings(_ state: ScheduleStateReader) throws {}

    /// The state in torch's layout: the settings, then `base_lrs`, `last_epoch`, `_step_count`,
    /// `_is_initial`, `_get_lr_called_within_step`, `_last_lr`. Counterpart: `scheduler.state_dict()`.
    public func stateDict() -> Value {
        let items: [(String, Value)] = settingItems() + [
            ("base_lrs", .list(baseLearningRates.map { .float($0) })), ("last_epoch", .int(lastEpoch)),
            ("_step_count", .int(stepCount)), ("_is_initial", .bool(false)), ("_get_lr_called_within_step", .bool(false)),
            ("_last_lr", .list(lastLearningRates.map { .float($0) })),
        ]
        return .dict(PyDict(items: items.map { (.string($0.0), $0.1) }))
    }

    /// Restores a state torch or ckpt saved; nothing changes unless all of it fits.
    /// Counterpart: `scheduler.load_state_dict(sd)`.
    /// - Throws: `OptimizerError.stateMismatch` when `base_lrs` or `_last_lr` hold another
    ///   number of groups than the optimizer; `.malformedState`; `.invalidHyperParameter`.
    public func loadStateDict(_ value: Value) throws {
        let state = try ScheduleStateReader(value, context: "\(name) state dict")
        let groups = optimizer.groups.count
        let base = try state.doubles("base_lrs", count: groups) ?? baseLearningRates
        let last = try state.doubles("_last_lr", count: groups) ?? lastLearningRates
        let epoch = try state.int("last_epoch") ?? lastEpoch
        let count = try state.int("_step_count") ?? stepCount
        try loadSettings(state)
        baseLearningRates = base
        lastLearningRates = last
        lastEpoch = epoch
        stepCount = count
    }
}

/// Reads one saved schedule state dict, with messages naming the key.
struct ScheduleStateReader {
    /// The mapping.
    let dict: PyDict
    /// `StepLR state dict`, `SequentialLR state dict: _schedulers[1]`.
    let context: String

    /// Wraps `value`, which must be a dict.
    /// - Throws: `OptimizerError.malformedState`.
    init(_ value: Value, context: String) throws {
        guard let dict = value.dictValue else {
            throw OptimizerError(.malformedState, context, "expected a dict, got \(value.typeName)")
        }
        self.dict = dict
        self.context = context
    }

    /// The integer under `key`, nil when absent.
    /// - Throws: `OptimizerError.malformedState` for a non-integer.
    func int(_ key: String) throws -> Int? {
        guard let v = dict[key] else { return nil }
        guard case let .int(i) = v else {
            throw OptimizerError(.malformedState, "\(context): '\(key)'", "expected an int, got \(v.typeName)")
        }
        return i
    }

    /// The number under `key`, nil when absent.
    /// - Throws: `OptimizerError.malformedState` for a non-number.
    func double(_ key: String) throws -> Double? {
        guard let v = dict[key] else { return nil }
        return try number(v, context: "\(context): '\(key)'")
    }

    /// The list of numbers under `key`, which must hold `count` of them; nil when absent.
    /// - Throws: `OptimizerError.stateMismatch` for another count, `.malformedState` otherwise.
    func doubles(_ key: String, count: Int) throws -> [Double]? {
        guard let v = dict[key] else { return nil }
        guard let items = v.sequenceValue else {
            throw OptimizerError(.malformedState, "\(context): '\(key)'", "expected a list of numbers, got \(v.typeName)")
        }
        guard items.count == count else {
            throw OptimizerError(.stateMismatch, "\(context): '\(key)'", "holds \(items.count) learning rate(s), the optimizer has \(count) parameter group(s)")
        }
        return try items.enumerated().map { try number($1, context: "\(context): '\(key)'[\($0)]") }
    }
}
