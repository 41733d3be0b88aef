#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CkptTensor

// Every formula below is torch's, term for term and in its order, in doubles (Python floats):
// `a * b / c` is `(a * b) / c`, an int times a float converts the int first, and `cos` is the C
// library's, which CPython's `math.cos` also calls.

/// Multiplies every group's learning rate by `gamma` every `stepSize` epochs.
/// Counterpart: `torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)`.
public final class StepLR: ChainableSchedule {
    /// Epochs between two decays (`step_size`).
    public private(set) var stepSize: Int
    /// Factor of each decay (`gamma`).
    public private(set) var gamma: Double

    /// Attaches to `optimizer` and sets the epoch-0 rates (the groups' current ones).
    /// - Throws: `OptimizerError.invalidHyperParameter` for a step size below 1 or a non-finite gamma.
    public init(optimizer: any Optimizer, stepSize: Int, gamma: Double = 0.1) throws {
        try StepLR.validate(stepSize: stepSize, gamma: gamma)
        self.stepSize = stepSize
        self.gamma = gamma
        try super.init(optimizer: optimizer, name: "StepLR")
    }

    private static func validate(stepSize: Int, gamma: Double) throws {
        guard stepSize >= 1 else { throw OptimizerError(.invalidHyperParameter, "StepLR", "step size must be at least 1, got \(stepSize)") }
        guard gamma.isFinite else { throw OptimizerError(.invalidHyperParameter, "StepLR", "gamma must be finite, got \(gamma)") }
    }

    override func chainedLearningRates(current: [Double]) -> [Double] {
        if lastEpoch == 0 || lastEpoch % stepSize != 0 { return current }
        return current.map { $0 * gamma }
    }

    override func closedFormLearningRates() -> [Double] {
        baseLearningRates.map { $0 * pow(gamma, Double(lastEpoch / stepSize)) }
    }

    override func settingItems() -> [(String, Value)] { [("step_size", .int(stepSize)), ("gamma", .float(gamma))] }

    override func loadSettings(_ state: ScheduleStateReader) throws {
        let s = try state.int("step_size") ?? stepSize
        let g = try state.double("gamma") ?? gamma
        try StepLR.validate(stepSize: s, gamma: g)
        stepSize = s
        gamma = g
    }
}

/// Anneals every group's learning rate from its initial value to `minimum` along half a cosine
/// over `period` epochs (and back up after, as torch's recursion continues).
/// Counterpart: `torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max, eta_min)`.
public final class CosineAnnealingLR: ChainableSchedule {
    /// Epochs of half a period (`T_max`).
    public private(set) var period: Int
    /// The lowest learning rate (`eta_min`).
    public private(set) var minimum: Double

    /// Attaches to `optimizer` and sets the epoch-0 rates (the groups' current ones).
    /// - Throws: `OptimizerError.invalidHyperParameter` for a period below 1 or a non-finite minimum.
    public init(optimizer: any Optimizer, period: Int, minimum: Double = 0) throws {
        try CosineAnnealingLR.validate(period: period, minimum: minimum)
        self.period = period
        self.minimum = minimum
        try super.init(optimizer: optimizer, name: "CosineAnnealingLR")
    }

    private static func validate(period: Int, minimum: Double) throws {
        guard period >= 1 else { throw OptimizerError(.invalidHyperParameter, "CosineAnnealingLR", "T_max must be at least 1, got \(period)") }
        guard minimum.isFinite, minimum >= 0 else {
            throw OptimizerError(.invalidHyperParameter, "CosineAnnealingLR", "eta_min must be zero or positive and finite, got \(minimum)")
        }
    }

    override func chainedLearningRates(current: [Double]) -> [Double] {
        let e = Double(lastEpoch), t = Double(period)
        if isInitial { return current }
        if stepCount == 1, lastEpoch > 0 {
            return baseLearningRates.map { minimum + ($0 - minimum) * (1 + cos(e * Double.pi / t)) / 2 }
        }
        if (lastEpoch - 1 - period) % (2 * period) == 0 {
            return zip(current, baseLearningRates).map { lr, base in lr + (base - minimum) * (1 - cos(Double.pi / t)) / 2 }
        }
        let ratio = (1 + cos(Double.pi * e / t)) / (1 + cos(Double.pi * (e - 1) / t))
        return current.map { ratio * ($0 - minimum) + minimum }
    }

    override func closedFormLearningRates() -> [Double] {
        let e = Double(lastEpoch), t = Double(period)
        return baseLearningRates.map { minimum + ($0 - minimum) * (1 + cos(Double.pi * e / t)) / 2 }
    }

    override func settingItems() -> [(String, Value)] { [("T_max", .int(period)), ("eta_min", .float(minimum))] }

    override func loadSettings(_ state: ScheduleStateReader) throws {
        let p = try state.int("T_max") ?? period
        let m = try state.double("eta_min") ?? minimum
        try CosineAnnealingLR.validate(period: p, minimum: m)
        period = p
        minimum = m
    }
}

/// Scales every group's learning rate by a factor going linearly from `startFactor` to
/// `endFactor` over `totalIterations` epochs: the usual warm-up.
/// Counterpart: `torch.optim.lr_scheduler.LinearLR(optimizer, start_factor, end_factor, total_iters)`.
public final class LinearLR: ChainableSchedule {
    /// Factor of epoch 0 (`start_factor`), in (0, 1].
    public private(set) var startFactor: Double
    /// Factor from `totalIterations` on (`end_factor`), in [0, 1].
    public private(set) var endFactor: Double
    /// Epochs until the end factor is reached (`total_iters`).
    public private(set) var totalIterations: Int

    /// Attaches to `optimizer` and sets the epoch-0 rates (`start_factor` times the current ones).
    /// - Throws: `OptimizerError.invalidHyperParameter` for factors outside torch's ranges or a
    ///   total below 1.
    public init(optimizer: any Optimizer, startFactor: Double = 1.0 / 3, endFactor: Double = 1, totalIterations: Int = 5) throws {
        try LinearLR.validate(start: startFactor, end: endFactor, total: totalIterations)
        self.startFactor = startFactor
        self.endFactor = endFactor
        self.totalIterations = totalIterations
        try super.init(optimizer: optimizer, name: "LinearLR")
    }

    private static func validate(start: Double, end: Double, total: Int) throws {
        guard start > 0, start <= 1 else {
            throw OptimizerError(.invalidHyperParameter, "LinearLR", "start factor must be in (0, 1], got \(start)")
        }
        guard end >= 0, end <= 1 else {
            throw OptimizerError(.invalidHyperParameter, "LinearLR", "end factor must be in [0, 1], got \(end)")
        }
        guard total >= 1 else { throw OptimizerError(.invalidHyperParameter, "LinearLR", "total_iters must be at least 1, got \(total)") }
    }

    override func chainedLearningRates(current: [Double]) -> [Double] {
        if lastEpoch == 0 { return current.map { $0 * startFactor } }
        if isInitial || lastEpoch > totalIterations { return current }
        let factor = 1.0 + (endFactor - startFactor)
            / (Double(totalIterations) * startFactor + Double(lastEpoch - 1) * (endFactor - startFactor))
        return current.map { $0 * factor }
    }

    override func closedFormLearningRates() -> [Double] {
        let reached = Double(min(totalIterations, lastEpoch))
        return baseLearningRates.map { $0 * (startFactor + (endFactor - startFactor) * reached / Double(totalIterations)) }
    }

    override func settingItems() -> [(String, Value)] {
        [("start_factor", .float(startFactor)), ("end_factor", .float(endFactor)), ("total_iters", .int(totalIterations))]
    }

    override func loadSettings(_ state: ScheduleStateReader) throws {
        let s = try state.double("start_factor") ?? startFactor
        let e = try state.double("end_factor") ?? endFactor
        let t = try state.int("total_iters") ?? totalIterations
        try LinearLR.validate(start: s, end: e, total: t)
        startFactor = s
        endFactor = e
        totalIterations = t
    }
}
