import CkptKernels

// N images, C channels, H rows, W columns (NCHW).

/// Children run in order, keyed `0`, `1`, `2`, … so parameter-free layers (ReLU, MaxPool) take
/// an index: the gaps in `features.0`, `features.3` of VGG keys.
///
/// In eval mode (and for a frozen prefix of a training pass) a `Conv2d` followed by a
/// `BatchNorm2d` (and a `ReLU`) runs as one convolution with the batch norm folded in, unless a
/// capture or trace needs the intermediate outputs.
/// PyTorch counterpart: `torch.nn.Sequential`.
public final class Sequential: Module {
    /// Children keyed by their position.
    public init(_ layers: [Module]) {
        super.init()
        for (i, l) in layers.enumerated() { register(String(i), l) }
    }

    /// Children keyed by the given names (`nn.Sequential(OrderedDict(...))`, or a slice that
    /// kept its original indices).
    public init(named layers: [(String, Module)]) {
        super.init()
        for (n, l) in layers { register(n, l) }
    }

    public override var typeName: String { "Sequential" }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        var x = input
        let items = children
        var i = 0
        while i < items.count {
            let (name, layer) = items[i]
            if let conv = layer as? Conv2d, i + 1 < items.count,
               let bn = items[i + 1].module as? BatchNorm2d, !bn.usesBatchStatistics, mayRunFrozen([conv, bn], context: context) {
                let withReLU = i + 2 < items.count && items[i + 2].module is ReLU
                let names = items[i ... (withReLU ? i + 2 : i + 1)].map(\.name)
                if context.mayFuse(names) {
                    for k in i ... (withReLU ? i + 2 : i + 1) { items[k].module.saveNothing(context) }
                    context.enter(name)
                    defer { context.leave() }
                    do {
                        let input = x
                        x = try context.timed(withReLU ? "Conv2d+BatchNorm2d+ReLU" : "Conv2d+BatchNorm2d") {
                            try conv.forwardFolding(input, batchNorm: bn, relu: withReLU)
                        }
                    } catch let e as KernelError {
                        throw NNError.layer(path: context.currentPath, type: conv.typeName, underlying: e)
                    }
                    i += withReLU ? 3 : 2
                    continue
                }
            }
            if let conv = layer as? Conv2d, i + 1 < items.count, items[i + 1].module is ReLU,
               mayRunFrozen([conv], context: context), context.mayFuse([name, items[i + 1].name]) {
                conv.saveNothing(context)
                items[i + 1].module.saveNothing(context)
                context.enter(name)
                defer { context.leave() }
                do {
                    let input = x
                    x = try context.timed("Conv2d+ReLU") { try conv.forwardWithReLU(input) }
                } catch let e as KernelError {
                    throw NNError.layer(path: context.currentPath, type: conv.typeName, underlying: e)
                }
                i += 2
                continue
            }
            if let bn = layer as? BatchNorm2d, i + 1 < items.count, let relu = items[i + 1].module as? ReLU {
                x = try runBatchNormReLU(bn, named: name, relu, named: items[i + 1].name, x, context: context)
                i += 2
                continue
            }
            x = try run(layer, named: name, x, context: context)
            i += 1
        }
        return x
    }

    /// The children's backwards in reverse order; once no gradient flows, the rest only pop. A
    /// `BatchNorm2d` followed by a `ReLU` runs one backward with the ReLU's mask applied inside the
    /// batch norm's (their tape entries are the same however the forward ran them).
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        var g = dOutput
        let items = children
        var i = items.count - 1
        while i >= 0 {
            let (name, layer) = items[i]
            if let relu = layer as? ReLU, i > 0, let bn = items[i - 1].module as? BatchNorm2d {
                g = try backwardBatchNormReLU(bn, named: items[i - 1].name, relu, named: name, g, context: context)
                i -= 2
                continue
            }
            g = try runBackward(layer, named: name, g, context: context)
            i -= 1
        }
        return g
    }
}
