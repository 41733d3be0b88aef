/// Adapting a convolution weight `[O, I, kH, kW]` to another number of input channels `C`.
///
/// PyTorch counterpart: timm's `adapt_input_conv(in_chans, conv_weight)` (`sum` to one
/// channel; for more, the weight repeated over channels, cut to `C` and scaled by `3 / C`),
/// generalised here from 3 to any source channel count `I`.
public enum InputConvolution {
    /// The adapted weight values (row-major `[O, C, kH, kW]`) of `weight` (row-major `[O, I, kH, kW]`).
    /// Arithmetic is float32 in channel order, as torch's `sum(dim=1)` and `repeat` + `*=` compute it.
    /// - Throws: `SurgeryError.mismatch` for a shape that is not a 4-d weight or for `random`.
    public static func adapt(_ weight: [Float], shape: [Int], to channels: Int, mode: InputChannelMode) throws -> [Float] {
        guard shape.count == 4, channels >= 1, weight.count == shape.reduce(1, *) else {
            throw SurgeryError(.mismatch, "input-channel adaptation needs a 4-d convolution weight, got shape \(shape)")
        }
        let (o, i, k) = (shape[0], shape[1], shape[2] * shape[3])
        let c = channels
        var out = [Float](repeating: 0, count: o * c * k)
        switch mode.resolved(target: c) {
        case .sum, .mean:
            let isMean = mode.resolved(target: c) == .mean
            for f in 0 ..< o {
                for p in 0 ..< k {
                    var s: Float = 0
                    for ch in 0 ..< i { s += weight[(f * i + ch) * k + p] }
                    let v = isMean ? s / Float(i) : (c == 1 ? s : s / Float(c))
                    for ch in 0 ..< c { out[(f * c + ch) * k + p] = v }
                }
            }
        case .repeat:
            let scale = Float(i) / Float(c)
            for f in 0 ..< o {
                for ch in 0 ..< c {
                    for p in 0 ..< k { out[(f * c + ch) * k + p] = weight[(f * i + ch % i) * k + p] * scale }
                }
            }
        case .zero:
            for f in 0 ..< o {
                for ch in 0 ..< min(c, i) {
                    for p in 0 ..< k { out[(f * c + ch) * k + p] = weight[(f * i + ch) * k + p] }
                }
            }
        case .random, .automatic:
            throw SurgeryError(.mismatch, "input-channel mode \(mode.rawValue) computes no weight")
        }
        return out
    }
}
