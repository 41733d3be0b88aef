import CkptKernels
import CkptNN
import CkptTensor

/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and L2 weight
/// decay, exactly as `torch.optim.SGD` updates float32 parameters on the CPU (its single-tensor
/// path, which torch takes for CPU tensors by default).
///
/// For each parameter with a gradient `g` (hyper-parameters are Python floats, which torch rounds
/// to float32 where a kernel takes them as a scalar):
///
///     g = g + weight_decay * p            fused multiply-add (grad.add(p, alpha=wd))
///     b = g                               first step: the buffer is a copy of the gradient, not 0
///     b = b * momentum  (rounded), then + (1 - dampening) * g   fused      later steps
///     g = g + momentum * b  (nesterov)   or   g = b
///     p = p + (-lr) * g                   fused multiply-add (p.add_(g, alpha=-lr))
///
/// The fused multiply-adds are what torch's CPU kernels compute (`vec::fmadd`, and the compiler's
/// contraction of `a + alpha * b` in the scalar tail), so results agree bit for bit.
public final class SGD: Optimizer {
    /// The parameter groups; `momentum`, `dampening`, `weightDecay` and `nesterov` are read.
    public var groups: [ParameterGroup]
    /// Momentum buffers (`state[p]['momentum_buffer']`), in the order torch creates them.
    private var buffers = ParameterStates<[Float]>()

    /// An optimizer over `groups`, each with its own hyper-parameters.
    /// Counterpart: `torch.optim.SGD([{'params': ..., 'lr': ...}, ...])`.
    /// - Throws: `OptimizerError.invalidHyperParameter` for a learning rate ≤ 0 or NaN, a negative
    ///   momentum or weight decay, or nesterov without momentum or with dampening;
    ///   `.invalidGroup` for a buffer, a parameter in two groups, or no parameter at all.
    public init(groups: [ParameterGroup]) throws {
        try validateGroupMembership(groups, optimizer: "sgd")
        for (i, g) in groups.enumerated() { try SGD.validate(g, index: i, atStep: false) }
        self.groups = groups
    }

    /// An optimizer with one group over `parameters`. Counterpart:
    /// `torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov)`.
    /// - Throws: as `init(groups:)`.
    public convenience init(parameters: [(key: String, parameter: Parameter)], learningRate: Double = 1e-3,
                            momentum: Double = 0, dampening: Double = 0, weightDecay: Double = 0, nesterov: Bool = false) throws {
        try self.init(groups: [ParameterGroup(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay,
                                              momentum: momentum, dampening: dampening, nesterov: nesterov)])
    }

    /// Checks a group's hyper-parameters as torch's constructor does (and a learning rate of 0 is
    /// refused at construction but accepted at a step, where a schedule may have annealed to it).
    /// - Throws: `OptimizerError.invalidHyperParameter` naming the group and the value.
    static func validate(_ g: ParameterGroup, index: Int, atStep: Bool) throws {
        let context = "sgd group \(index)"
        try validateLearningRate(g.learningRate, context: context, allowZero: atStep)
        try validateNonNegative(g.momentum, name: "momentum", context: context)
        try validateNonNegative(g.weightDecay, name: "weight decay", context: context)
        guard g.dampening.isFinite else {
            throw OptimizerError(.invalidHyperParameter, context, "dampening must be finite, got \(g.dampening)")
        }
        if g.nesterov, g.momentum <= 0 || g.dampening != 0 {
            throw OptimizerError(.invalidHyperParameter, context,
                                 "nesterov momentum needs a positive momentum and zero dampening, got momentum \(g.momentum), dampening \(g.dampening)")
        }
    }

    /// The momentum buffer of `parameter` (`optimizer.state[p]['momentum_buffer']`), nil before
    /// its first step with a gradient or when its group has no momentum.
    public func momentumBuffer(of parameter: Parameter) -> DenseTensor? {
        buffers[parameter].flatMap { try? DenseTensor(shape: parameter.value.shape, values: $0) }
    }

    /// One step over every parameter that has a gradient. Counterpart: `optimizer.step()`.
    /// - Throws: `OptimizerError.invalidHyperParameter` when a group was given invalid values
    ///   after construction, `.stateMismatch` when a parameter's value no longer has the shape of
    ///   its gradient or momentum buffer; no parameter is changed then.
    public func step() throws {
        for (i, g) in groups.enumerated() { try SGD.validate(g, index: i, atStep: true) }
        try checkStepShapes(groups, states: buffers, optimizer: "sgd") { $0.count }
        for group in groups {
            for entry in group.parameters {
                guard let gradient = entry.parameter.gradient else { continue }
                update(entry.parameter, gradient: gradient.values, group: group)
            }
        }
    }

    private func update(_ p: Parameter, gradient: [Float], group: ParameterGroup) {
        let n = gradient.count
        let wd = Float(group.weightDecay)
        let m = Float(group.momentum)
        let keep = Float(1 - group.dampening)
        let nesterov = group.nesterov
        let step = Float(-group.learningRate)
        // torch: buf = torch.clone(grad).detach() — the first (decayed) gradient, undamped
        let first = group.momentum != 0 && buffers[p] == nil
        if group.momentum != 0 && first { buffers.set([Float](repeating: 0, count: n), for: p) }
        let hasMomentum = group.momentum != 0
        // element by element, torch's operations in torch's order; slices of the tensor over the cores
        func run(_ w: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ b: UnsafeMutablePointer<Float>?) {
            let box = UncheckedSendable((w, g, b))
            let slice = 1 << 15
            parallelFor((n + slice - 1) / slice) { part in
                let (w, g, b) = box.value
                let range = part * slice ..< min(n, (part + 1) * slice)
                if OptimizerKernels.sgd(weights: w, gradient: g, buffer: b, range: range, weightDecay: wd, momentum: m,
                                        keep: keep, nesterov: nesterov, first: first, step: step) { return }
                for i in range {
                    var d = g[i]
                    if wd != 0 { d = d.addingProduct(w[i], wd) }
                    if let b {
                        if first {
                            b[i] = d
                        } else {
                            b[i] = (b[i] * m).addingProduct(d, keep)
                        }
                        d = nesterov ? d.addingProduct(b[i], m) : b[i]
                    }
                    w[i] = w[i].addingProduct(d, step)
                }
            }
        }
        gradient.withUnsafeBufferPointer { gb in
            p.value.values.withUnsafeMutableBufferPointer { wb in
                guard let g = gb.baseAddress, let w = wb.baseAddress else { return }
                if hasMomentum {
                    _ = buffers.modify(p) { buffer in
                        buffer.withUnsafeMutableBufferPointer { bb in run(w, g, bb.baseAddress) }
                    }
                } else {
                    run(w, g, nil)
                }
            }
        }
    }

    /// The state in torch's layout: `momentum_buffer` per parameter that has one, and per group
    /// `lr, momentum, dampening, weight_decay, nesterov, maximize, foreach, differentiable, fused,
    /// [initial_lr,] params`. Counterpart: `optimizer.state_dict()`.
    /// - Throws: `TensorError` only for impossible shapes.
    public func stateDict() throws -> Value {
        let items = groups.map { g -> [(String, Value)] in
            [("lr", .float(g.learningRate)), ("momentum", .float(g.momentum)), ("dampening", .float(g.dampening)),
             ("weight_decay", .float(g.weightDecay)), ("nesterov", .bool(g.nesterov)), ("maximize", .bool(false)),
             ("foreach", .none), ("differentiable", .bool(false)), ("fused", .none)]
        }
        let state = try buffers.entries.map { e in
            (parameter: e.parameter, items: [("momentum_buffer", try stateTensor(e.state, shape: e.parameter.value.shape))])
        }
        return makeOptimizerStateDict(groups: groups, groupItems: items, state: state)
    }

    /// Takes the hyper-parameters and momentum buffers of a state dict torch or ckpt saved.
    /// Counterpart: `optimizer.load_state_dict(sd)`.
    /// - Throws: `OptimizerError.stateMismatch` for other group or parameter counts, another
    ///   buffer shape, or state an SGD does not keep; `.malformedState` for a dict not laid out
    ///   as torch's; `.invalidHyperParameter` / `.unsupported` (`maximize=True`) for its values.
    public func loadStateDict(_ value: Value) throws {
        let loaded = try LoadedOptimizerState(value, groups: groups)
        var newGroups = groups
        for (i, saved) in loaded.groups.enumerated() {
            newGroups[i].learningRate = try saved.double("lr")
            newGroups[i].momentum = try saved.double("momentum")
            newGroups[i].dampening = try saved.double("dampening")
            newGroups[i].weightDecay = try saved.double("weight_decay")
            newGroups[i].nesterov = try saved.bool("nesterov", default: false)
            newGroups[i].initialLearningRate = try saved.optionalDouble("initial_lr")
            if try saved.bool("maximize", default: false) {
                throw OptimizerError(.unsupported, "\(stateDictContext): \(saved.path)['maximize']", "maximize=True is not implemented by ckpt")
            }
            try SGD.validate(newGroups[i], index: i, atStep: true)
        }
        var entries: [(parameter: Parameter, state: [Float])] = []
        for s in loaded.state {
            try checkStateKeys(s.items, allowed: ["momentum_buffer"], optimizer: "SGD", path: s.path)
            if let b = try savedStateTensor(s.items, "momentum_buffer", parameter: s.parameter, parameterKey: s.key, path: s.path) {
                entries.append((s.parameter, b))
            }
        }
        groups = newGroups
        buffers.replaceAll(entries)
    }
}
