import CkptKernels

// N images, C channels, H rows, W columns (NCHW).

extension Module {
    /// Runs the backward of `child` (called under `name` in the forward): tracks the path, names
    /// the layer in kernel errors, times it when profiling.
    /// - Throws: what the child's backward throws; kernel errors come back naming the child's path.
    public func runBackward(_ child: Module, named name: String, _ dOutput: DenseTensor?,
                            context: ForwardContext) throws -> DenseTensor? {
        context.enter(name)
        defer { context.leave() }
        do {
            return child.children.isEmpty
                ? try context.timedBackward(child.typeName) { try child.backward(dOutput, context: context) }
                : try child.backward(dOutput, context: context)
        } catch let e as KernelError {
            throw NNError.layer(path: context.currentPath, type: child.typeName, underlying: e)
        }
    }

    /// Runs `body`, naming this module's path in a kernel error.
    func namingErrors<T>(_ context: ForwardContext, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as KernelError {
            throw NNError.layer(path: context.currentPath, type: typeName, underlying: e)
        }
    }

    /// Mirrors `runConvolutionBatchNorm`: the backward of `relu?(bn(conv(x)))`.
    /// - Throws: what the children's backwards throw.
    public func backwardConvolutionBatchNorm(
        _ conv: Conv2d, named convName: String, _ bn: BatchNorm2d, named bnName: String,
        relu: (module: ReLU, name: String)?, _ dOutput: DenseTensor?, context: ForwardContext
    ) throws -> DenseTensor? {
        var g = dOutput
        if let r = relu {
            g = try backwardBatchNormReLU(bn, named: bnName, r.module, named: r.name, g, context: context)
        } else {
            g = try runBackward(bn, named: bnName, g, context: context)
        }
        return try runBackward(conv, named: convName, g, context: context)
    }

    /// The backward of `relu(bn(x))` in one pass over the gradient: the ReLU's entry is popped and
    /// its output masks `dOutput` inside the batch norm's backward (ReLU's own backward would first
    /// write a masked copy). Profiled as `BatchNorm2d+ReLU backward`.
    /// - Throws: what the batch norm's backward throws; kernel errors name the batch norm's path.
    public func backwardBatchNormReLU(_ bn: BatchNorm2d, named bnName: String, _ relu: ReLU, named reluName: String,
                                      _ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        context.enter(reluName)
        let entry = try context.pop(for: relu)
        context.leave()
        // what ReLU.backward would pass on: nothing unless both sides need a gradient
        var mask: DenseTensor?
        if entry.outputNeedsGradient, entry.inputNeedsGradient, case let .tensor(y) = entry.saved { mask = y }
        let dy = mask == nil ? nil : dOutput
        context.enter(bnName)
        defer { context.leave() }
        do {
            return try context.timedBackward("BatchNorm2d+ReLU") { try bn.backward(dy, reluOutput: mask, context: context) }
        } catch let e as KernelError {
            throw NNError.layer(path: context.currentPath, type: bn.typeName, underlying: e)
        }
    }

    /// True when `modules` may run on an eval-only fused path in this pass: not recording, or
    /// recording but nothing among them needs a gradient (a frozen prefix).
    func mayRunFrozen(_ modules: [Module], context: ForwardContext) -> Bool {
        !context.isRecording || (!context.flowNeedsGradient && !modules.contains { $0.trainsOwnParameters })
    }

    /// The sum of two optional gradients (a residual's branches, a skip and its successor), added
    /// into `a`'s buffer when the caller passes its last use of it (no copy first).
    /// - Throws: `NNError.layer` naming this module when both exist and their shapes differ.
    public func sumGradients(_ a: consuming DenseTensor?, _ b: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        guard let b else { return a }
        guard let x = consume a else { return b }
        do {
            // not through `namingErrors`: a closure capturing `x` would hold a second reference
            return try Elementwise.add(consume x, b)
        } catch let e as KernelError {
            throw NNError.layer(path: context.currentPath, type: typeName, underlying: e)
        }
    }
}

extension Module {
    /// `torch.flatten(x, 1)` inside this module's forward, keeping the shape for the backward.
    /// - Throws: `KernelError` for a rank below 2.
    public func flattenRecording(_ x: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        if context.isRecording {
            let needs = context.flowNeedsGradient
            context.push(TapeEntry(module: ObjectIdentifier(self), inputNeedsGradient: needs, outputNeedsGradient: needs,
                                   saved: .shape(x.shape)))
        }
        return try Elementwise.flatten(x)
    }

    /// Mirrors `flattenRecording`: the gradient reshaped to the flattened tensor's shape.
    /// - Throws: `NNError.backwardOrder` when the tape is out of step.
    public func unflattenGradient(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        let entry = try context.pop(for: self)
        guard let g = dOutput, entry.inputNeedsGradient, case let .shape(shape) = entry.saved else { return nil }
        return try g.reshaped(shape)
    }

    /// `torch.cat(parts, dim=1)` inside this module's forward, keeping the parts' shapes; the flow
    /// needs a gradient after it when any part's did (`partFlows`).
    /// - Throws: `KernelError` when the parts do not fit together.
    public func concatenateRecording(_ parts: [DenseTensor], partFlows: [Bool], context: ForwardContext) throws -> DenseTensor {
        let y = try namingErrors(context) { try Elementwise.concatenateChannels(parts) }
        if context.isRecording {
            let needs = partFlows.contains(true)
            context.flowNeedsGradient = needs
            context.push(TapeEntry(module: ObjectIdentifier(self), inputNeedsGradient: needs, outputNeedsGradient: needs,
                                   saved: .shapes(parts.map(\.shape))))
        }
        return y
    }

    /// Mirrors `concatenateRecording`: the gradient cut into one part per concatenated input.
    /// - Throws: `NNError.backwardOrder` when the tape is out of step; kernel errors.
    public func splitGradient(_ dOutput: DenseTensor?, context: ForwardContext) throws -> [DenseTensor?] {
        let entry = try context.pop(for: self)
        guard case let .shapes(shapes) = entry.saved else {
            throw NNError.backwardOrder(path: context.currentPath, expected: "concatenation shapes", found: "\(entry.saved)")
        }
        guard let g = dOutput, entry.outputNeedsGradient else { return shapes.map { _ in nil } }
        return try namingErrors(context) { try Elementwise.splitChannels(g, counts: shapes.map { $0[1] }) }
    }

    /// Pushes this composite's own entry (after its children's): whether its input needed a gradient.
    public func saveBranchPoint(inputNeedsGradient: Bool, context: ForwardContext) {
        guard context.isRecording else { return }
        context.push(TapeEntry(module: ObjectIdentifier(self), inputNeedsGradient: inputNeedsGradient,
                               outputNeedsGradient: context.flowNeedsGradient, saved: .nothing))
    }

    /// Pops the entry `saveBranchPoint` pushed; returns whether the input needed a gradient.
    /// - Throws: `NNError.backwardOrder` when the tape is out of step.
    public func popBranchPoint(context: ForwardContext) throws -> Bool {
        try context.pop(for: self).inputNeedsGradient
    }
}
