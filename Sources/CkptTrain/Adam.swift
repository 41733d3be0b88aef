#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CkptKernels
import CkptNN
import CkptTensor

/// One parameter's Adam state: torch's `{'step': tensor(t), 'exp_avg': m, 'exp_avg_sq': v}`.
struct AdamState {
    /// Steps taken with a gradient; a float32 counter, as torch keeps it on the CPU.
    var step: Float
    /// First moment `m`.
    var expAvg: [Float]
    /// Second moment `v`.
    var expAvgSq: [Float]
}

/// The update rule and state shared by `Adam` and `AdamW`, which differ only in where the weight
/// decay goes (torch's `decoupled_weight_decay`).
///
/// Per parameter with gradient `g`, in torch's order (`_single_tensor_adam`): the step counter
/// advances; the decay is applied (`p *= 1 - lr*wd` for AdamW, `g = g + wd*p` fused for Adam);
/// `m.lerp_(g, 1 - beta1)`, which torch computes as `fma(w, g - m, m)` for a weight below 0.5;
/// `v = v*beta2` rounded, then `+ ((1 - beta2)*g)*g` fused; then, with Python doubles
/// `bc1 = 1 - beta1**t`, `bc2 = 1 - beta2**t`, `step = lr / bc1`,
/// `p = p + ((-step)*m) / (sqrt(v) / bc2**0.5 + eps)` in float32. eps is added outside the square
/// root, as torch adds it.
struct AdamRule {
    /// True for AdamW.
    let decoupled: Bool
    /// `adam` or `adamw`, for messages.
    let name: String
    /// Per-parameter state, in the order torch creates it.
    var states = ParameterStates<AdamState>()

    /// The rule for `groups`, checked as torch's constructor checks them.
    /// - Throws: `OptimizerError.invalidGroup` / `.invalidHyperParameter`.
    init(groups: [ParameterGroup], decoupled: Bool) throws {
        self.decoupled = decoupled
        self.name = decoupled ? "adamw" : "adam"
        try validateGroupMembership(groups, optimizer: name)
        for (i, g) in groups.enumerated() { try validate(g, index: i, atStep: false) }
    }

    /// Checks a group as torch's constructor does; a learning rate of 0 passes only at a step.
    /// - Throws: `OptimizerError.invalidHyperParameter` naming the group and the value.
    func validate(_ g: ParameterGroup, index: Int, atStep: Bool) throws {
        let context = "\(name) group \(index)"
        try validateLearningRate(g.learningRate, context: context, allowZero: atStep)
        try validateNonNegative(g.eps, name: "eps", context: context)
        for (k, beta) in [g.betas.0, g.betas.1].enumerated() where !(beta >= 0 && beta < 1) {
            throw OptimizerError(.invalidHyperParameter, context, "betas[\(k)] must be in [0, 1), got \(beta)")
        }
        try validateNonNegative(g.weightDecay, name: "weight decay", context: context)
    }

    /// One step over every parameter of `groups` that has a gradient.
    /// - Throws: `OptimizerError.invalidHyperParameter` / `.stateMismatch`; nothing changes then.
    mutating func step(_ groups: [ParameterGroup]) throws {
        for (i, g) in groups.enumerated() { try validate(g, index: i, atStep: true) }
        try checkStepShapes(groups, states: states, optimizer: name) { $0.expAvg.count }
        for group in groups {
            for entry in group.parameters {
                guard let gradient = entry.parameter.gradient else { continue }
                update(entry.parameter, gradient: gradient.values, group: group)
            }
        }
    }

    private mutating func update(_ p: Parameter, gradient: [Float], group: ParameterGroup) {
        let n = gradient.count
        if states[p] == nil {
            states.set(AdamState(step: 0, expAvg: [Float](repeating: 0, count: n), expAvgSq: [Float](repeating: 0, count: n)), for: p)
        }
        let lr = group.learningRate
        let (beta1, beta2) = group.betas
        if group.weightDecay != 0 && decoupled {
            let keep = Float(1 - lr * group.weightDecay)
            p.value.values.withUnsafeMutableBufferPointer { w in
                for i in 0 ..< n { w[i] *= keep }
            }
        }
        if OptimizerKernels.isEnabled {
            // one pass over the AVX-512 lanes, slices over the cores: the same values as the loops below
            let decay = group.weightDecay != 0 && !decoupled ? Float(group.weightDecay) : 0
            _ = states.modify(p) { s in
                s.step += 1
                let (divisor, eps, scale) = Self.stepScalars(group, step: s.step)
                gradient.withUnsafeBufferPointer { gb in
                    p.value.values.withUnsafeMutableBufferPointer { wb in
                        s.expAvg.withUnsafeMutableBufferPointer { mb in
                            s.expAvgSq.withUnsafeMutableBufferPointer { vb in
                                guard let g = gb.baseAddress, let w = wb.baseAddress, let m = mb.baseAddress,
                                      let v = vb.baseAddress else { return }
                                let box = UncheckedSendable((w, g, m, v))
                                let slice = 1 << 15
                                parallelFor((n + slice - 1) / slice) { part in
                                    let (w, g, m, v) = box.value
                                    _ = OptimizerKernels.adam(weights: w, gradient: g, expAvg: m, expAvgSq: v,
                                                              range: part * slice ..< min(n, (part + 1) * slice), coupledDecay: decay,
                                                              lerpWeight: Float(1 - beta1), beta2: Float(beta2),
                                                              oneMinusBeta2: Float(1 - beta2), divisor: divisor, eps: eps, scale: scale)
                                }
                            }
                        }
                    }
                }
            }
            return
        }
        var g = gradient
        if group.weightDecay != 0 {
            if !decoupled {
                let wd = Float(group.weightDecay)
                p.value.values.withUnsafeBufferPointer { w in
                    for i in 0 ..< n { g[i] = g[i].addingProduct(w[i], wd) }
                }
            }
        }
        _ = states.modify(p) { s in
            s.step += 1
            // lerp with a float32 weight, both branches of torch's lerp kernel
            let w = Float(1 - beta1)
            if abs(w) < 0.5 {
                for i in 0 ..< n { s.expAvg[i] = s.expAvg[i].addingProduct(w, g[i] - s.expAvg[i]) }
            } else {
                for i in 0 ..< n { s.expAvg[i] = g[i].addingProduct(w - 1, g[i] - s.expAvg[i]) }
            }
            let b2 = Float(beta2)
            let c2 = Float(1 - beta2)
            for i in 0 ..< n { s.expAvgSq[i] = (s.expAvgSq[i] * b2).addingProduct(c2 * g[i], g[i]) }

            let (divisor, eps, scale) = Self.stepScalars(group, step: s.step)
            p.value.values.withUnsafeMutableBufferPointer { w in
                for i in 0 ..< n {
                    let denom = s.expAvgSq[i].squareRoot() / divisor + eps
                    w[i] = w[i] + (scale * s.expAvg[i]) / denom
                }
            }
        }
    }

    /// The update's scalars at step `step` (from 1), as torch computes them in Python floats
    /// (`step.item()`, `beta**step`, `lr / bc1`, `bc2**0.5`): the divisor `√bc2`, eps and `−lr/bc1`.
    static func stepScalars(_ group: ParameterGroup, step: Float) -> (divisor: Float, eps: Float, scale: Float) {
        let (beta1, beta2) = group.betas
        let t = Double(step)
        let bc1 = 1 - pow(beta1, t)
        let bc2 = 1 - pow(beta2, t)
        let stepSize = group.learningRate / bc1
        return (Float(pow(bc2, 0.5)), Float(group.eps), Float(-stepSize))
    }

    /// The groups' items in torch's key order (without `initial_lr` and `params`).
    func groupItems(_ groups: [ParameterGroup]) -> [[(String, Value)]] {
        groups.map { g in
            [("lr", .float(g.learningRate)), ("betas", .tuple([.float(g.betas.0), .float(g.betas.1)])), ("eps", .float(g.eps)),
             ("weight_decay", .float(g.weightDecay)), ("amsgrad", .bool(false)), ("maximize", .bool(false)), ("foreach", .none),
             ("capturable", .bool(false)), ("differentiable", .bool(false)), ("fused", .none),
             ("decoupled_weight_decay", .bool(decoupled))]
        }
    }

    /// The state dict of `groups` and this state.
    /// - Throws: `TensorError` only for impossible shapes.
    func stateDict(_ groups: [ParameterGroup]) throws -> Value {
        let state = try states.entries.map { e in
            let shape = e.parameter.value.shape
            return (parameter: e.parameter, items: [("step", try stateTensor([e.state.step], shape: [])),
                                                    ("exp_avg", try stateTensor(e.state.expAvg, shape: shape)),
                                                    ("exp_avg_sq", try stateTensor(e.state.expAvgSq, shape: shape))])
        }
        return makeOptimizerStateDict(groups: groups, groupItems: groupItems(groups), state: state)
    }

    /// Reads a saved state dict into new groups and state, touching nothing on failure.
    /// - Throws: `OptimizerError` as `Optimizer.loadStateDict` documents.
    mutating func load(_ value: Value, into groups: inout [ParameterGroup]) throws {
        let loaded = try LoadedOptimizerState(value, groups: groups)
        var newGroups = groups
        for (i, saved) in loaded.groups.enumerated() {
            newGroups[i].learningRate = try saved.double("lr")
            newGroups[i].betas = try saved.pair("betas")
            newGroups[i].eps = try saved.double("eps")
            newGroups[i].weightDecay = try saved.double("weight_decay")
            newGroups[i].initialLearningRate = try saved.optionalDouble("initial_lr")
            for flag in ["amsgrad", "maximize"] where try saved.bool(flag, default: false) {
                throw OptimizerError(.unsupported, "\(stateDictContext): \(saved.path)['\(flag)']", "\(flag)=True is not implemented by ckpt")
            }
            // AdamW's __setstate__ forces the flag; Adam keeps what was saved
            let savedDecoupled = try saved.bool("decoupled_weight_decay", default: false)
            if savedDecoupled != decoupled, !(decoupled && saved.dict["decoupled_weight_decay"] == nil) {
                throw OptimizerError(.stateMismatch, "\(stateDictContext): \(saved.path)['decoupled_weight_decay']",
                                     "is \(savedDecoupled ? "True (an AdamW state dict)" : "False (an Adam state dict)"), the optimizer is \(decoupled ? "AdamW" : "Adam")")
            }
            try validate(newGroups[i], index: i, atStep: true)
        }
        var entries: [(parameter: Parameter, state: AdamState)] = []
        for s in loaded.state {
            try checkStateKeys(s.items, allowed: ["step", "exp_avg", "exp_avg_sq"], optimizer: decoupled ? "AdamW" : "Adam", path: s.path)
            guard let stepValue = s.items["step"] else {
                throw OptimizerError(.malformedState, "\(stateDictContext): \(s.path)", "has no 'step'")
            }
            let step = try number(stepValue, context: "\(stateDictContext): \(s.path)['step']")
            guard let m = try savedStateTensor(s.items, "exp_avg", parameter: s.parameter, parameterKey: s.key, path: s.path),
                  let v = try savedStateTensor(s.items, "exp_avg_sq", parameter: s.parameter, parameterKey: s.key, path: s.path) else {
                throw OptimizerError(.malformedState, "\(stateDictContext): \(s.path)", "needs both 'exp_avg' and 'exp_avg_sq' tensors")
            }
            entries.append((s.parameter, AdamState(step: Float(step), expAvg: m, expAvgSq: v)))
        }
        groups = newGroups
        states.replaceAll(entries)
    }
}

/// Adam with L2 weight decay added to the gradient, exactly as `torch.optim.Adam` updates float32
/// parameters on the CPU (single-tensor path, `amsgrad=False`, `maximize=False`).
public final class Adam: Optimizer {
    /// The parameter groups; `betas`, `eps` and `weightDecay` are read.
    public var groups: [ParameterGroup]
    private var rule: AdamRule

    /// An optimizer over `groups`. Counterpart: `torch.optim.Adam([{'params': ..., 'lr': ...}, ...])`.
    /// - Throws: `OptimizerError.invalidHyperParameter` for a learning rate ≤ 0 or NaN, betas
    ///   outside [0, 1), a negative eps or weight decay; `.invalidGroup` for a buffer, a parameter
    ///   in two groups, or no parameter at all.
    public init(groups: [ParameterGroup]) throws {
        rule = try AdamRule(groups: groups, decoupled: false)
        self.groups = groups
    }

    /// An optimizer with one group over `parameters`, with torch's defaults.
    /// Counterpart: `torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)`.
    /// - Throws: as `init(groups:)`.
    public convenience init(parameters: [(key: String, parameter: Parameter)], learningRate: Double = 1e-3,
                            betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8, weightDecay: Double = 0) throws {
        try self.init(groups: [ParameterGroup(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay,
                                              betas: betas, eps: eps)])
    }

    /// One step over every parameter that has a gradient. Counterpart: `optimizer.step()`.
    /// - Throws: `OptimizerError.invalidHyperParameter` when a group was given invalid values
    ///   after construction, `.stateMismatch` when a parameter's value no longer has the shape of
    ///   its gradient or moments; no parameter is changed then.
    public func step() throws { try rule.step(groups) }

    /// The state in torch's layout (`step` a 0-dim float32 tensor, `exp_avg`, `exp_avg_sq`; group
    /// keys `lr, betas, eps, weight_decay, amsgrad, maximize, foreach, capturable, differentiable,
    /// fused, decoupled_weight_decay, [initial_lr,] params`). Counterpart: `optimizer.state_dict()`.
    /// - Throws: `TensorError` only for impossible shapes.
    public func stateDict() throws -> Value { try rule.stateDict(groups) }

    /// Takes the hyper-parameters and moments of a state dict torch or ckpt saved.
    /// Counterpart: `optimizer.load_state_dict(sd)`.
    /// - Throws: `OptimizerError.stateMismatch` for other counts or shapes, an AdamW state dict
    ///   or state Adam does not keep; `.malformedState`; `.unsupported` for amsgrad or maximize.
    public func loadStateDict(_ value: Value) throws { try rule.load(value, into: &groups) }

    /// Steps taken by `parameter` (`state[p]['step']`), 0 before its first gradient.
    public func stepCount(of parameter: Parameter) -> Int { Int(rule.states[parameter]?.step ?? 0) }
}

/// Adam with decoupled weight decay (`p *= 1 - lr*wd` before the moments), exactly as
/// `torch.optim.AdamW` updates float32 parameters on the CPU (single-tensor path).
public final class AdamW: Optimizer {
    /// The parameter groups; `betas`, `eps` and `weightDecay` are read.
    public var groups: [ParameterGroup]
    private var rule: AdamRule

    /// An optimizer over `groups` (whose weight decay defaults to 0, not torch's 0.01: say it).
    /// Counterpart: `torch.optim.AdamW([{'params': ..., 'lr': ..., 'weight_decay': ...}, ...])`.
    /// - Throws: as `Adam.init(groups:)`.
    public init(groups: [ParameterGroup]) throws {
        rule = try AdamRule(groups: groups, decoupled: true)
        self.groups = groups
    }

    /// An optimizer with one group over `parameters`, with torch's defaults (weight decay 0.01).
    /// Counterpart: `torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)`.
    /// - Throws: as `init(groups:)`.
    public convenience init(parameters: [(key: String, parameter: Parameter)], learningRate: Double = 1e-3,
                            betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8, weightDecay: Double = 1e-2) throws {
        try self.init(groups: [ParameterGroup(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay,
                                              betas: betas, eps: eps)])
    }

    /// One step over every parameter that has a gradient. Counterpart: `optimizer.step()`.
    /// - Throws: `OptimizerError.invalidHyperParameter` when a group was given invalid values
    ///   after construction, `.stateMismatch` when a parameter's value no longer has the shape of
    ///   its gradient or moments; no parameter is changed then.
    public func step() throws { try rule.step(groups) }

    /// The state in torch's layout, as `Adam.stateDict()` with `decoupled_weight_decay=True`.
    /// Counterpart: `optimizer.state_dict()`.
    /// - Throws: `TensorError` only for impossible shapes.
    public func stateDict() throws -> Value { try rule.stateDict(groups) }

    /// Takes the hyper-parameters and moments of a state dict torch or ckpt saved.
    /// Counterpart: `optimizer.load_state_dict(sd)`.
    /// - Throws: `OptimizerError.stateMismatch` for other counts or shapes, an Adam state dict or
    ///   state AdamW does not keep; `.malformedState`; `.unsupported` for amsgrad or maximize.
    public func loadStateDict(_ value: Value) throws { try rule.load(value, into: &groups) }

    /// Steps taken by `parameter` (`state[p]['step']`), 0 before its first gradient.
    public func stepCount(of parameter: Parameter) -> Int { Int(rule.states[parameter]?.step ?? 0) }
}
