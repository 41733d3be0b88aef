import CkptKernels
import CkptTensor

// N images, C channels, H rows, W columns (NCHW).

extension Module {
    /// Every dotted path a forward pass can capture (`named_modules()` names, the model itself excluded).
    public var layerPaths: [String] {
        var seen = Set<String>()
        return namedModules().map(\.path).filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    /// Eval-mode forward on the named inputs (`model.eval(); model(*inputs)` under `no_grad`).
    ///
    /// - Parameters:
    ///   - inputs: one batched NCHW tensor per name in `inputNames`.
    ///   - layer: a dotted module path (`features.26`, `layer3.1`, `enc2`) whose output to return
    ///     instead of the model's; its first call wins when it runs more than once.
    ///   - checkFinite: reject inputs holding NaN or infinity.
    ///   - fuse: fold eval-mode batch norms into convolutions (faster; rounds differently from
    ///     running the layers one by one, within float32 noise).
    /// - Returns: the model's output, or the captured layer's.
    /// - Throws: `NNError.unknownLayer`, `.inputCount`, `.nonFiniteInput`, or `.layer` naming the
    ///   module whose kernel rejected its input.
    public func evaluate(_ inputs: [DenseTensor], capturing layer: String? = nil, checkFinite: Bool = true, fuse: Bool = true) throws -> DenseTensor {
        try evaluate(inputs, context: ForwardContext(capturing: layer, fusing: fuse), checkFinite: checkFinite)
    }

    /// Eval-mode forward under a caller-made `context` (to read its profile afterwards).
    /// - Throws: as `evaluate(_:capturing:checkFinite:fuse:)`.
    public func evaluate(_ inputs: [DenseTensor], context: ForwardContext, checkFinite: Bool = true) throws -> DenseTensor {
        let layer = context.captureTarget
        if let l = layer, !layerPaths.contains(l) {
            throw NNError.unknownLayer(name: l, available: layerPaths)
        }
        guard inputs.count == inputNames.count else {
            throw NNError.inputCount(expected: inputNames, got: inputs.count)
        }
        if checkFinite {
            for (name, x) in zip(inputNames, inputs) {
                if let i = x.values.firstIndex(where: { !$0.isFinite }) { throw NNError.nonFiniteInput(name: name, index: i) }
            }
        }
        let y: DenseTensor
        do {
            y = try forward(inputs: inputs, context: context)
        } catch let e as KernelError {
            throw NNError.layer(path: "", type: typeName, underlying: e)
        }
        guard let l = layer else { return y }
        guard let c = context.captured else { throw NNError.unknownLayer(name: l, available: layerPaths) }
        return c
    }
}

extension Module {
    /// The forward arguments picked by name (`inputNames`: `x`; `x1`, `x2`) out of the tensors of
    /// an inputs file, as batched NCHW float32. A one-input model also takes a file holding
    /// exactly one tensor under any name.
    /// - Throws: `NNError.missingInput` naming what the file holds, `.inputShape` for a tensor
    ///   that is not 4-d, `TensorError` for a dtype that cannot become float32.
    public func inputs(from tensors: [(key: String, tensor: Tensor)]) throws -> [DenseTensor] {
        try inputNames.map { name in
            let t: Tensor
            if let found = tensors.first(where: { $0.key == name })?.tensor {
                t = found
            } else if inputNames.count == 1, tensors.count == 1 {
                t = tensors[0].tensor
            } else {
                throw NNError.missingInput(name: name, available: tensors.map(\.key))
            }
            guard t.shape.count == 4 else { throw NNError.inputShape(name: name, expected: "[N, C, H, W]", got: t.shape) }
            return try DenseTensor(t)
        }
    }
}
