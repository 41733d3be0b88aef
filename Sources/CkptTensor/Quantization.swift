/// How a quantized tensor's stored integers stand for real numbers: `x = (q - zero_point) * scale`,
/// with one scale and zero point for the whole tensor or one per index along `axis`.
///
/// PyTorch counterpart: a quantized tensor's quantizer (`t.qscheme()`, `q_scale()`,
/// `q_zero_point()`, `q_per_channel_scales()`, `q_per_channel_zero_points()`,
/// `q_per_channel_axis()`), as `torch._utils._rebuild_qtensor` builds it from a checkpoint.
public indirect enum Quantization: Sendable {
    /// `torch.per_tensor_affine`.
    case perTensor(scale: Double, zeroPoint: Int)
    /// `torch.per_channel_affine` (integer zero points) or `per_channel_affine_float_qparams`
    /// (floating zero points, which torch picks when the saved zero points are floating): 1-D
    /// tensors of `shape[axis]` scales and zero points.
    case perChannel(scales: Tensor, zeroPoints: Tensor, axis: Int)

    /// torch's name of the scheme (`str(t.qscheme())` without `torch.`).
    public var schemeName: String {
        switch self {
        case .perTensor: return "per_tensor_affine"
        case let .perChannel(_, zeroPoints, _):
            return zeroPoints.dtype.isFloatingPoint ? "per_channel_affine_float_qparams" : "per_channel_affine"
        }
    }

    /// Scale and zero point of each channel along the axis (one pair for a per-tensor scheme),
    /// as doubles.
    /// - Throws: when the parameter tensors cannot be read.
    public func parameters() throws -> (scales: [Double], zeroPoints: [Double]) {
        switch self {
        case let .perTensor(scale, zeroPoint): return ([scale], [Double(zeroPoint)])
        case let .perChannel(scales, zeroPoints, _): return (try scales.doubles(), try zeroPoints.doubles())
        }
    }

    /// True when `a` and `b` stand for the same values given the same stored integers: both nil,
    /// or one scheme with equal parameters (and axis).
    /// - Throws: when parameter tensors cannot be read.
    public static func same(_ a: Quantization?, _ b: Quantization?) throws -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case let (x?, y?):
            if case let .perChannel(_, _, ax) = x, case let .perChannel(_, _, ay) = y, ax != ay { return false }
            return try x.schemeName == y.schemeName && x.parameters() == y.parameters()
        default: return false
        }
    }

    /// Checks the parameters against the quantized tensor's shape as torch's `_rebuild_qtensor`
    /// does: an axis inside the shape, 1-D scale and zero-point tensors of `shape[axis]` real
    /// numbers. (Scales themselves are not checked: torch loads a zero or negative scale as saved.)
    /// - Throws: `TensorError.badView` naming what does not fit.
    public func validate(shape: [Int]) throws {
        switch self {
        case .perTensor: return
        case let .perChannel(scales, zeroPoints, axis):
            guard axis >= 0, axis < shape.count else {
                throw TensorError.badView("quantization axis \(axis) is outside a tensor of shape \(shape)")
            }
            for (what, t) in [("scales", scales), ("zero points", zeroPoints)] {
                guard t.shape == [shape[axis]] else {
                    throw TensorError.badView("per-channel \(what) have shape \(t.shape); axis \(axis) of shape \(shape) needs [\(shape[axis])]")
                }
                guard t.dtype.isNumericallyReadable, !t.dtype.isComplex, !t.dtype.isQuantized else {
                    throw TensorError.badView("per-channel \(what) are \(t.dtype.rawValue), expected real numbers")
                }
            }
        }
    }
}
