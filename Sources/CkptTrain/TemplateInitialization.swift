import CkptKernels
import CkptNN
import CkptSurgery
import CkptTensor

/// Fresh values for a template target, whose modules are known only by their keys and shapes:
/// PyTorch's layer defaults, inferred from the shapes (the modules a template's user built).
public enum TemplateInitialization {
    /// Keys of the template's head: the module of its last 2-d weight (a `Linear` classifier).
    public static func headKeys(_ specs: [ParameterSpec]) -> [String] {
        guard let last = specs.last(where: { $0.name == "weight" && $0.shape.count == 2 }) else { return [] }
        return specs.filter { $0.modulePath == last.modulePath }.map(\.key)
    }

    /// Values for `wanted`: conv and linear weights `kaiming_uniform_(a=√5)` with biases uniform in
    /// `±1/√fan_in` (PyTorch's `reset_parameters`); a batch norm's weight 1, bias 0, running mean 0,
    /// variance 1, counter 0; anything else zero. Each module draws from its own seeded stream.
    /// - Throws: `TensorError` only for impossible shapes.
    public static func values(for wanted: [ParameterSpec], among specs: [ParameterSpec], seed: UInt64) throws -> [String: Tensor] {
        var byModule: [String: [ParameterSpec]] = [:]
        for s in specs { byModule[s.modulePath, default: []].append(s) }
        var out: [String: Tensor] = [:]
        for spec in wanted {
            let siblings = byModule[spec.modulePath] ?? [spec]
            let isNorm = siblings.contains { $0.name == "running_mean" }
            let weight = siblings.first { $0.name == "weight" }
            var rng = SeededGenerator(seed: seed ^ fnv1a(spec.key))
            let value: DenseTensor
            switch spec.name {
            case "running_var": value = DenseTensor(shape: spec.shape, repeating: 1)
            case "running_mean", "num_batches_tracked": value = DenseTensor(shape: spec.shape)
            case "weight" where spec.shape.count >= 2: value = Initialization.defaultWeight(spec.shape, using: &rng)
            case "weight" where isNorm || spec.shape.count == 1: value = DenseTensor(shape: spec.shape, repeating: 1)
            case "bias" where !isNorm && (weight?.shape.count ?? 0) >= 2:
                value = Initialization.defaultBias(spec.shape.reduce(1, *), weightShape: weight?.shape ?? spec.shape, using: &rng)
            default: value = DenseTensor(shape: spec.shape)
            }
            if spec.dtype == .int64 {
                out[spec.key] = try Tensor(dtype: .int64, shape: spec.shape, bytes: [UInt8](repeating: 0, count: 8 * spec.elementCount))
            } else {
                out[spec.key] = try value.reshaped(spec.shape).tensor()
            }
        }
        return out
    }

    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}
