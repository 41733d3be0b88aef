import CkptNN
import CkptTensor

/// Parameters trained with one set of hyper-parameters: one entry of torch's
/// `optimizer.param_groups`.
///
/// Each optimizer reads only its own fields: `SGD` the momentum, dampening, weight decay and
/// nesterov flag; `Adam` and `AdamW` the betas, eps and weight decay. The others keep their
/// defaults and are never written to a state dict. Frozen parameters are left out of every group,
/// as `filter(lambda p: p.requires_grad, model.parameters())` leaves them out in torch.
public struct ParameterGroup {
    /// The parameters with their state-dict keys, in the order torch numbers them.
    public var parameters: [(key: String, parameter: Parameter)]
    /// The learning rate of the next step (`group['lr']`); schedules change it.
    public var learningRate: Double
    /// The learning rate a schedule started from (`group['initial_lr']`), set by the first
    /// schedule attached to the optimizer; nil until then.
    public var initialLearningRate: Double?
    /// L2 penalty (`weight_decay`): added to the gradient by SGD and Adam, applied to the
    /// parameter directly by AdamW.
    public var weightDecay: Double
    /// SGD's momentum factor (`momentum`); 0 keeps no momentum buffer.
    public var momentum: Double
    /// SGD's dampening of the gradient added to the momentum buffer (`dampening`).
    public var dampening: Double
    /// SGD's Nesterov momentum (`nesterov`); needs a momentum and zero dampening.
    public var nesterov: Bool
    /// Adam's decay rates of the first and second moment (`betas`).
    public var betas: (Double, Double)
    /// Adam's term added to the denominator (`eps`), outside the square root as torch adds it.
    public var eps: Double

    /// A group with torch's defaults for everything not given (AdamW's default weight decay is
    /// 0.01: pass it, or use `AdamW(parameters:)`).
    public init(parameters: [(key: String, parameter: Parameter)], learningRate: Double, weightDecay: Double = 0,
                momentum: Double = 0, dampening: Double = 0, nesterov: Bool = false,
                betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.betas = betas
        self.eps = eps
    }

    /// The parameters of `module` that train, with their keys: torch's
    /// `[(n, p) for n, p in model.named_parameters() if p.requires_grad]`. A parameter shared
    /// by several modules is listed once, under its first key, as `named_parameters()` lists it.
    public static func trainableParameters(of module: Module) -> [(key: String, parameter: Parameter)] {
        var seen = Set<ObjectIdentifier>()
        return module.namedParameters().filter { entry in
            entry.parameter.role == .parameter && entry.parameter.requiresGrad
                && seen.insert(ObjectIdentifier(entry.parameter)).inserted
        }
    }
}

/// An optimizer that updates its groups' parameters from their gradients, with PyTorch's exact
/// update rules and `state_dict()` layout. Counterpart: `torch.optim.Optimizer`.
public protocol Optimizer: AnyObject {
    /// The parameter groups, in torch's order (`param_groups`); schedules set their learning rates.
    var groups: [ParameterGroup] { get set }

    /// Updates every parameter that has a gradient; a parameter whose gradient is nil is left
    /// alone and its state does not advance (torch skips `p.grad is None`). Counterpart:
    /// `optimizer.step()`.
    /// - Throws: `OptimizerError.invalidHyperParameter` when a group's values became invalid
    ///   (a negative or NaN learning rate set after construction).
    func step() throws

    /// Forgets every gradient of every group's parameters, setting them to none.
    /// Counterpart: `optimizer.zero_grad()` (`set_to_none=True`, torch's default).
    func zeroGradients()

    /// The state in torch's `optimizer.state_dict()` layout: `{'state': {index: {...}},
    /// 'param_groups': [{hyper-parameters…, 'params': [indices]}]}`, parameters numbered across
    /// groups from 0. Counterpart: `optimizer.state_dict()`.
    /// - Throws: `TensorError` only if a state tensor cannot be built (it cannot for valid state).
    func stateDict() throws -> Value

    /// Replaces the state and the groups' hyper-parameters by those of a state dict torch (or
    /// ckpt) saved, keeping the parameters. Nothing changes unless the whole dict fits.
    /// Counterpart: `optimizer.load_state_dict(sd)`.
    /// - Throws: `OptimizerError.stateMismatch` when the group count, a group's parameter count
    ///   or a state tensor's shape differs; `.malformedState` for a dict not laid out as torch's;
    ///   `.invalidHyperParameter` / `.unsupported` for values ckpt cannot train with.
    func loadStateDict(_ value: Value) throws
}

extension Optimizer {
    /// Forgets every gradient of every group's parameters (`optimizer.zero_grad()`).
    public func zeroGradients() {
        for group in groups {
            for entry in group.parameters { entry.parameter.zeroGradient() }
        }
    }

    /// Each group's current learning rate (`[g['lr'] for g in optimizer.param_groups]`).
    public var learningRates: [Double] { groups.map(\.learningRate) }
}

/// Per-parameter optimizer state in the order torch's `self.state` fills it: a parameter's entry
/// is created at its first step with a gradient, so the order can differ from the groups'.
struct ParameterStates<State> {
    /// The parameters that have state, each with it, in creation order.
    private(set) var entries: [(parameter: Parameter, state: State)] = []
    private var positions: [ObjectIdentifier: Int] = [:]

    /// The state of `parameter`, if it has any.
    subscript(parameter: Parameter) -> State? {
        positions[ObjectIdentifier(parameter)].map { entries[$0].state }
    }

    /// Stores the state of `parameter`; a parameter without state is appended.
    mutating func set(_ state: State, for parameter: Parameter) {
        let id = ObjectIdentifier(parameter)
        if let i = positions[id] {
            entries[i].state = state
        } else {
            positions[id] = entries.count
            entries.append((parameter, state))
        }
    }

    /// Runs `body` on the state of `parameter` in place (no copy of its buffers); nil when the
    /// parameter has no state yet.
    mutating func modify<R>(_ parameter: Parameter, _ body: (inout State) throws -> R) rethrows -> R? {
        guard let i = positions[ObjectIdentifier(parameter)] else { return nil }
        return try body(&entries[i].state)
    }

    /// Replaces every entry, in the given order (a loaded state dict's).
    mutating func replaceAll(_ newEntries: [(parameter: Parameter, state: State)]) {
        entries = newEntries
        positions = [:]
        for (i, e) in newEntries.enumerated() { positions[ObjectIdentifier(e.parameter)] = i }
    }
}

/// Checks, before a step changes anything, that every gradient and every state buffer still has
/// its parameter's element count (a parameter whose value was replaced by another shape would
/// otherwise be read out of bounds).
/// - Throws: `OptimizerError.stateMismatch` naming the parameter and both counts.
func checkStepShapes<State>(_ groups: [ParameterGroup], states: ParameterStates<State>, optimizer: String,
                            stateCount: (State) -> Int) throws {
    for (g, group) in groups.enumerated() {
        for entry in group.parameters {
            guard let gradient = entry.parameter.gradient else { continue }
            let n = entry.parameter.value.count
            let context = "\(optimizer) group \(g)"
            if gradient.count != n {
                throw OptimizerError(.stateMismatch, context,
                                     "'\(entry.key)': gradient has shape \(gradient.shape), the parameter has shape \(entry.parameter.value.shape)")
            }
            if let s = states[entry.parameter], stateCount(s) != n {
                throw OptimizerError(.stateMismatch, context,
                                     "'\(entry.key)': its state holds \(stateCount(s)) values, the parameter has \(n) (was the parameter replaced?)")
            }
        }
    }
}

/// Checks the group structure torch's `add_param_group` checks: at least one parameter, no
/// buffer, no parameter in two groups.
/// - Throws: `OptimizerError.invalidGroup` naming the group and key.
func validateGroupMembership(_ groups: [ParameterGroup], optimizer: String) throws {
    var seen: [ObjectIdentifier: (group: Int, key: String)] = [:]
    for (g, group) in groups.enumerated() {
        for entry in group.parameters {
            if entry.parameter.role != .parameter {
                throw OptimizerError(.invalidGroup, "\(optimizer) group \(g)", "'\(entry.key)' is a buffer, which no optimizer trains")
            }
            if let first = seen[ObjectIdentifier(entry.parameter)] {
                throw OptimizerError(.invalidGroup, "\(optimizer) group \(g)",
                                     "'\(entry.key)' is already in group \(first.group) as '\(first.key)'; a parameter may be in one group only")
            }
            seen[ObjectIdentifier(entry.parameter)] = (g, entry.key)
        }
    }
    if seen.isEmpty {
        throw OptimizerError(.invalidGroup, optimizer, "got no parameters to optimize (every parameter frozen, or no group given)")
    }
}

/// Checks a learning rate: positive and finite when the optimizer is built, and at least zero at
/// each step (a schedule may anneal it to exactly 0, as cosine annealing with `eta_min=0` does).
/// - Throws: `OptimizerError.invalidHyperParameter`.
func validateLearningRate(_ lr: Double, context: String, allowZero: Bool) throws {
    let ok = lr.isFinite && (allowZero ? lr >= 0 : lr > 0)
    guard ok else {
        throw OptimizerError(.invalidHyperParameter, context,
                             "learning rate must be \(allowZero ? "zero or positive" : "positive") and finite, got \(lr)")
    }
}

/// Checks that a non-negative hyper-parameter (`weight decay`, `momentum`, `eps`) is finite and ≥ 0.
/// - Throws: `OptimizerError.invalidHyperParameter`.
func validateNonNegative(_ x: Double, name: String, context: String) throws {
    guard x.isFinite, x >= 0 else {
        throw OptimizerError(.invalidHyperParameter, context, "\(name) must be zero or positive and finite, got \(x)")
    }
}
