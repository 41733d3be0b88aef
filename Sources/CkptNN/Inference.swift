import CkptKernels

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
        let context = ForwardContext(capturing: layer, fusing: fuse)
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
