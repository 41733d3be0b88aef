import CkptKernels
import CkptTensor

// Shapes follow PyTorch's NCHW layout: N images in a batch, C channels, H rows, W columns.

/// A node of a network, named and nested exactly as PyTorch names and nests it.
///
/// A module owns parameters and buffers (in registration order) and child modules (in
/// registration order); the state-dict key of a parameter is the dotted path of names from the
/// model down to it. Subclasses register everything in `init` and override `forward`.
/// The same module object may be registered under several names (its parameters are then
/// shared, as a Python list `* n` shares them).
/// PyTorch counterpart: `torch.nn.Module`.
open class Module {
    /// Own parameters and buffers in registration order (`_parameters` then `_buffers`).
    public private(set) var ownParameters: [(name: String, parameter: Parameter)] = []
    /// Child modules in registration order (`_modules`).
    public private(set) var children: [(name: String, module: Module)] = []
    /// Training mode (`module.training`); ckpt models start in eval mode.
    public private(set) var isTraining = false

    /// An empty module.
    public init() {}

    /// PyTorch's class name for this module (`Conv2d`, `BasicBlock`).
    open var typeName: String { String(describing: type(of: self)) }

    /// Names of the forward arguments, as checkpoints of inputs name them (`x`; `x1`, `x2`).
    open var inputNames: [String] { ["x"] }

    /// The modules that end `forward`, in calling order, with their paths from this module: each
    /// is called through `run` on the previous one's output, the first on what comes before
    /// (ResNet's `fc` after the flatten; VGG's and AlexNet's `classifier.0` … `classifier.6`).
    /// Empty when the forward does not end in such a chain (SegNet). A head that starts at one
    /// of them can train on cached inputs of that module (`Sequential(named:)` of the rest).
    open var sequentialTail: [(path: String, module: Module)] { [] }

    /// Registers a parameter or buffer under `name` (`register_parameter` / `register_buffer`).
    @discardableResult
    public func register(_ name: String, _ parameter: Parameter) -> Parameter {
        ownParameters.append((name, parameter))
        return parameter
    }

    /// Registers a child module under `name` (`add_module`); registering one object twice shares it.
    @discardableResult
    public func register<M: Module>(_ name: String, _ child: M) -> M {
        children.append((name, child))
        return child
    }

    /// Puts `child` where the child `name` was (same name, same position); false when there is none.
    @discardableResult
    public func replaceChild(named name: String, with child: Module) -> Bool {
        guard let i = children.firstIndex(where: { $0.name == name }) else { return false }
        children[i].module = child
        return true
    }

    /// The child registered under `name`, or nil.
    public func child(named name: String) -> Module? {
        children.first { $0.name == name }?.module
    }

    /// The module at a dotted path below this one (`layer1.0.conv1`), or nil.
    public func submodule(at path: String) -> Module? {
        if path.isEmpty { return self }
        var m: Module = self
        for part in path.split(separator: ".") {
            guard let c = m.child(named: String(part)) else { return nil }
            m = c
        }
        return m
    }

    /// Sets training or eval mode on this module and every descendant (`train()` / `eval()`).
    public func setTraining(_ training: Bool) {
        isTraining = training
        for c in children { c.module.setTraining(training) }
    }

    /// Every module below this one with its dotted path, depth-first, each path once, shared
    /// modules listed under every name (`named_modules(remove_duplicate=False)`).
    public func namedModules(prefix: String = "") -> [(path: String, module: Module)] {
        var out: [(String, Module)] = [(prefix, self)]
        for c in children {
            out += c.module.namedModules(prefix: prefix.isEmpty ? c.name : prefix + "." + c.name)
        }
        return out
    }

    /// Every parameter and buffer with its state-dict key, in `state_dict()` order: a module's
    /// own parameters, then its own buffers, then each child's entries. Shared parameters
    /// appear under every key.
    public func namedParameters(prefix: String = "") -> [(key: String, parameter: Parameter)] {
        func join(_ n: String) -> String { prefix.isEmpty ? n : prefix + "." + n }
        var out: [(String, Parameter)] = []
        for p in ownParameters where p.parameter.role == .parameter { out.append((join(p.name), p.parameter)) }
        for p in ownParameters where p.parameter.role == .buffer { out.append((join(p.name), p.parameter)) }
        for c in children { out += c.module.namedParameters(prefix: join(c.name)) }
        return out
    }

    /// The state-dict contract: key, shape, dtype and role of every entry, in `state_dict()` order.
    public func parameterSpecs() -> [ParameterSpec] {
        namedParameters().map {
            ParameterSpec(key: $0.key, shape: $0.parameter.value.shape, dtype: $0.parameter.dtype, role: $0.parameter.role)
        }
    }

    /// Groups of keys that name one shared parameter (SegNet's `dec5.1.weight`, `dec5.4.weight`, …).
    public func sharedKeyGroups() -> [[String]] {
        var groups: [ObjectIdentifier: [String]] = [:]
        var order: [ObjectIdentifier] = []
        for (key, p) in namedParameters() {
            let id = ObjectIdentifier(p)
            if groups[id] == nil { order.append(id) }
            groups[id, default: []].append(key)
        }
        return order.compactMap { groups[$0] }.filter { $0.count > 1 }
    }

    /// Number of distinct parameter elements (buffers excluded; shared parameters counted once),
    /// as `sum(p.numel() for p in model.parameters())`.
    public var parameterCount: Int {
        var seen = Set<ObjectIdentifier>()
        var n = 0
        for (_, p) in namedParameters() where p.role == .parameter && seen.insert(ObjectIdentifier(p)).inserted {
            n += p.value.shape.reduce(1, *)  // by shape: specification-only models hold no values
        }
        return n
    }

    /// Multiply-adds of one call with these shapes as torchinfo counts them ("Mult-Adds");
    /// layers that compute override it.
    open func multAdds(inputShape: [Int], outputShape: [Int]) -> Int { 0 }

    /// Multiply-adds one call actually performs (throughput figures): `multAdds` except where
    /// torchinfo's convention counts otherwise (transposed convolution).
    open func arithmeticMultAdds(inputShape: [Int], outputShape: [Int]) -> Int {
        multAdds(inputShape: inputShape, outputShape: outputShape)
    }

    /// The module's computation on one input. Composite modules call children through `run`.
    /// - Throws: `NNError` naming the layer that failed.
    open func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        throw NNError.inputCount(expected: inputNames, got: 1)
    }

    /// The module's computation on its named inputs; the default takes exactly one.
    /// - Throws: `NNError.inputCount` for the wrong number of inputs, or what `forward` throws.
    open func forward(inputs: [DenseTensor], context: ForwardContext) throws -> DenseTensor {
        guard inputs.count == 1 else { throw NNError.inputCount(expected: inputNames, got: inputs.count) }
        return try forward(inputs[0], context: context)
    }

    /// The mirror of `forward` in a recording pass: given `∂L/∂output` (nil when no gradient flows
    /// here), adds into the gradients of trainable parameters and returns `∂L/∂input`, or nil
    /// when the input needs none. Pops exactly what the matching forward call pushed.
    /// - Throws: `NNError.noBackward` for a module that cannot train; kernel errors.
    open func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        throw NNError.noBackward(path: context.currentPath, type: typeName)
    }

    /// The backward of a call with several inputs: one gradient per input (nil where none is
    /// needed); the default mirrors the one-input `forward`.
    /// - Throws: as `backward(_:context:)`.
    open func backward(inputs dOutput: DenseTensor?, context: ForwardContext) throws -> [DenseTensor?] {
        [try backward(dOutput, context: context)]
    }

    /// Runs `child` under `name`: tracks the path, captures and traces its output.
    /// - Throws: what the child throws; kernel errors come back naming the child's path.
    public func run(_ child: Module, named name: String, _ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        context.enter(name)
        defer { context.leave() }
        if let t = context.inputCaptureTarget, context.capturedInput == nil, t == context.currentPath { context.capturedInput = input }
        let y: DenseTensor
        do {
            y = child.children.isEmpty
                ? try context.timed(child.typeName) { try child.forward(input, context: context) }
                : try child.forward(input, context: context)
        } catch let e as KernelError {
            throw NNError.layer(path: context.currentPath, type: child.typeName, underlying: e)
        }
        context.record(y, module: child, input: input.shape)
        return y
    }

    /// Records an output computed without calling the child (a fused kernel), so capture and
    /// trace still see the child's name.
    public func noteOutput(_ output: DenseTensor, of child: Module, named name: String, input: [Int], context: ForwardContext) {
        context.enter(name)
        context.record(output, module: child, input: input)
        context.leave()
    }
}

extension Module {
    /// `relu?(bn(conv(x)))` for children named `convName`, `bnName` (and `reluName`): one folded
    /// convolution in eval mode when nothing captures the intermediate outputs, else three calls.
    /// - Throws: `NNError.layer` naming the failing child.
    public func runConvolutionBatchNorm(
        _ conv: Conv2d, named convName: String, _ bn: BatchNorm2d, named bnName: String,
        relu: (module: ReLU, name: String)?, _ input: DenseTensor, context: ForwardContext
    ) throws -> DenseTensor {
        let names = [convName, bnName] + (relu.map { [$0.name] } ?? [])
        if !bn.usesBatchStatistics && mayRunFrozen([conv, bn], context: context) && context.mayFuse(names) {
            conv.saveNothing(context)
            bn.saveNothing(context)
            relu?.module.saveNothing(context)
            context.enter(convName)
            defer { context.leave() }
            do {
                return try context.timed(relu == nil ? "Conv2d+BatchNorm2d" : "Conv2d+BatchNorm2d+ReLU") {
                    try conv.forwardFolding(input, batchNorm: bn, relu: relu != nil)
                }
            } catch let e as KernelError {
                throw NNError.layer(path: context.currentPath, type: conv.typeName, underlying: e)
            }
        }
        let y = try run(conv, named: convName, input, context: context)
        guard let r = relu else { return try run(bn, named: bnName, y, context: context) }
        return try runBatchNormReLU(bn, named: bnName, r.module, named: r.name, y, context: context)
    }

    /// `relu(bn(conv(x)) + residual)` for children named `convName`, `bnName` and `reluName` (ResNet's
    /// block tail) as one folded convolution that adds the residual as it writes its output; nil,
    /// with nothing run, unless this is an eval pass (not recording) in which nothing captures or
    /// traces those children and the batch norm uses its running statistics.
    /// - Throws: `NNError.layer` naming the convolution.
    public func runConvolutionBatchNormAddReLU(
        _ conv: Conv2d, named convName: String, _ bn: BatchNorm2d, named bnName: String, relu: ReLU, named reluName: String,
        _ input: DenseTensor, residual: () throws -> DenseTensor, context: ForwardContext
    ) throws -> DenseTensor? {
        guard !context.isRecording, !bn.usesBatchStatistics, context.mayFuse([convName, bnName, reluName]) else { return nil }
        let identity = try residual()
        context.enter(convName)
        defer { context.leave() }
        do {
            return try context.timed("Conv2d+BatchNorm2d+add+ReLU") {
                try conv.forwardFolding(input, batchNorm: bn, addingReLU: identity)
            }
        } catch let e as KernelError {
            throw NNError.layer(path: context.currentPath, type: conv.typeName, underlying: e)
        }
    }

    /// `relu(bn(x))` for children named `bnName` and `reluName`, in one pass when nothing captures
    /// or traces the batch norm's own output (training included: the ReLU's entry still goes on the tape).
    /// - Throws: `NNError.layer` naming the batch norm.
    public func runBatchNormReLU(_ bn: BatchNorm2d, named bnName: String, _ relu: ReLU, named reluName: String,
                                 _ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        guard context.mayFuse([bnName, reluName]) else {
            let y = try run(bn, named: bnName, input, context: context)
            return try run(relu, named: reluName, y, context: context)
        }
        context.enter(bnName)
        defer { context.leave() }
        do {
            return try context.timed("BatchNorm2d+ReLU") { try bn.forward(input, relu: relu, context: context) }
        } catch let e as KernelError {
            throw NNError.layer(path: context.currentPath, type: bn.typeName, underlying: e)
        }
    }

    /// `relu(a + b)` where `relu` is the child `reluName` (ResNet's block tail), fused when allowed.
    /// - Throws: `NNError.layer` when the shapes differ.
    public func runAddReLU(_ a: consuming DenseTensor, _ b: DenseTensor, relu: ReLU, named reluName: String,
                           context: ForwardContext) throws -> DenseTensor {
        let fuse = context.mayFuse([reluName])
        let sum: DenseTensor
        do {
            // `a` is the block's last use of its branch output: add into it in place
            sum = try Elementwise.add(consume a, b, epilogue: fuse ? .relu : .none)
        } catch let e as KernelError {
            throw NNError.layer(path: context.currentPath, type: typeName, underlying: e)
        }
        if fuse, let flow = relu.gradientFlow(context) {
            // the fused ReLU's entry, as its own forward would have pushed it
            relu.save(flow.output ? .tensor(sum) : .nothing, flow: flow, context: context)
        }
        return fuse ? sum : try run(relu, named: reluName, sum, context: context)
    }
}
