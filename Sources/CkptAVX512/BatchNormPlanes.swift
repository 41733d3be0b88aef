// N images, C channels; a plane is one image's H·W values of one channel.

/// The per-plane loops of a training-mode batch norm (`BatchNormalization.trainingForward` and
/// `backward` in CkptKernels). Each is `@inlinable`: inlined into CkptKernels, it is the portable
/// build for CPUs without AVX-512; its `…AVX512` twin here is the same code compiled for AVX-512
/// (one register per sixteen lanes, where the portable build takes four), which CkptKernels calls
/// only on CPUs that report avx512f. Same operations, no fused multiply-add, in both.
public enum BatchNormPlanes {
    /// `y = x̂·γ + β` with `x̂ = (x − mean)·invstd` (then `max(y, 0)` with `relu`) over `count`
    /// elements, in sixteen lanes with the scalar loop's operations (no fused multiply-add). x̂ is
    /// not kept: the backward forms it again from `x`, bit for bit (`xhat`).
    @inlinable @inline(__always)
    public static func normalize(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                 count: Int, mean: Float, invstd: Float, gamma: Float, beta: Float, relu: Bool) {
        typealias V = SIMD16<Float>
        var i = 0
        while i + 16 <= count {
            let v = (UnsafeRawPointer(x + i).loadUnaligned(as: V.self) - mean) * invstd
            let t = v * gamma + beta
            // max(t, 0) as Swift's max: 0 where t ≤ 0, t otherwise (a NaN stays)
            UnsafeMutableRawPointer(y + i).storeBytes(of: relu ? t.replacing(with: 0, where: t .<= 0) : t, as: V.self)
            i += 16
        }
        while i < count {
            let v = (x[i] - mean) * invstd
            y[i] = relu ? max(v * gamma + beta, 0) : v * gamma + beta
            i += 1
        }
    }

    /// x̂ as `normalize` forms it: `(x − centre)·scale` (centre 0 and scale 1 for an x̂ given as is).
    @inlinable @inline(__always)
    static func xhat(_ x: SIMD16<Float>, _ centre: Float, _ scale: Float) -> SIMD16<Float> { (x - centre) * scale }

    /// `dx = k·(dy − mean(dy) − x̂·mean(dy·x̂))` over `count` elements, `x̂ = (x − centre)·scale`
    /// formed as it is read, `dy` masked by a ReLU's output when given (`y ≤ 0 ? 0 : dy`), in
    /// sixteen lanes (a branch per element mispredicts on a ReLU's mask half the time).
    @inlinable @inline(__always)
    public static func inputGradient(_ gy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ relu: UnsafePointer<Float>?,
                                     _ dx: UnsafeMutablePointer<Float>, count: Int, scale k: Float, meanB: Float, meanG: Float,
                                     centre: Float, xhatScale: Float, affineReLU: (gamma: Float, beta: Float)? = nil) {
        typealias V = SIMD16<Float>
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        var i = 0
        while i + 16 <= count {
            var d = load(gy + i)
            if let relu { d.replace(with: 0, where: load(relu + i) .<= 0) }
            let xh = xhat(load(x + i), centre, xhatScale)
            if let (g, b) = affineReLU { d.replace(with: 0, where: xh * g + b .<= 0) }
            UnsafeMutableRawPointer(dx + i).storeBytes(of: k * (d - meanB - xh * meanG), as: V.self)
            i += 16
        }
        while i < count {
            let xh = (x[i] - centre) * xhatScale
            let d = maskedTail(gy[i], relu: relu.map { $0[i] }, xhat: xh, affineReLU: affineReLU)
            dx[i] = k * (d - meanB - xh * meanG)
            i += 1
        }
    }

    /// `dy` of one tail element masked as the sixteen-lane loops mask it: by a ReLU's output, or by
    /// `x̂·γ + β` (the pre-ReLU output `normalize` computed, formed again: `≤ 0` exactly where the
    /// ReLU's output is).
    @inlinable @inline(__always)
    static func maskedTail(_ dy: Float, relu: Float?, xhat: Float, affineReLU: (gamma: Float, beta: Float)?) -> Float {
        if let relu, relu <= 0 { return 0 }
        if let (g, b) = affineReLU, xhat * g + b <= 0 { return 0 }
        return dy
    }

    /// `Σ x` (no `centre`) or `Σ (x − centre)²` over `count` elements, in sixteen lanes (a single
    /// running sum would wait on each addition).
    @inlinable @inline(__always)
    public static func sums(_ x: UnsafePointer<Float>, count: Int, centre: Float?) -> (sum: Float, squares: Float) {
        typealias V = SIMD16<Float>
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        var acc = V()
        var i = 0
        if let centre {
            let m = V(repeating: centre)
            while i + 16 <= count {
                let d = load(x + i) - m
                // not addProduct: this module is built without FMA, where a vector fused
                // multiply-add becomes one libm `fmaf` call per lane
                acc += d * d
                i += 16
            }
            var tail = acc.sum()
            while i < count { let d = x[i] - centre; tail += d * d; i += 1 }
            return (0, tail)
        }
        while i + 16 <= count {
            acc += load(x + i)
            i += 16
        }
        var tail = acc.sum()
        while i < count { tail += x[i]; i += 1 }
        return (tail, 0)
    }

    /// `(Σ dy·x̂, Σ dy)` over `count` elements, `x̂ = (x − centre)·scale` formed as it is read, `dy`
    /// masked by a ReLU's output when given, in sixteen lanes (a single running sum would wait on
    /// each addition).
    @inlinable @inline(__always)
    public static func gradientSums(_ gy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ relu: UnsafePointer<Float>?,
                                    count: Int, centre: Float, xhatScale: Float,
                                    affineReLU: (gamma: Float, beta: Float)? = nil) -> (Float, Float) {
        typealias V = SIMD16<Float>
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        var sg = V(), sb = V()
        var i = 0
        if let relu {
            while i + 16 <= count {
                let d = load(gy + i).replacing(with: 0, where: load(relu + i) .<= 0)
                sg += d * xhat(load(x + i), centre, xhatScale)
                sb += d
                i += 16
            }
        } else if let (g, b) = affineReLU {
            while i + 16 <= count {
                let xh = xhat(load(x + i), centre, xhatScale)
                let d = load(gy + i).replacing(with: 0, where: xh * g + b .<= 0)
                sg += d * xh
                sb += d
                i += 16
            }
        } else {
            while i + 16 <= count {
                let d = load(gy + i)
                sg += d * xhat(load(x + i), centre, xhatScale)
                sb += d
                i += 16
            }
        }
        var pg = sg.sum(), pb = sb.sum()
        while i < count {
            let xh = (x[i] - centre) * xhatScale
            let d = maskedTail(gy[i], relu: relu.map { $0[i] }, xhat: xh, affineReLU: affineReLU)
            pg += d * xh
            pb += d
            i += 1
        }
        return (pg, pb)
    }

    /// `normalize` compiled for AVX-512.
    public static func normalizeAVX512(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                       count: Int, mean: Float, invstd: Float, gamma: Float, beta: Float, relu: Bool) {
        normalize(x, y, count: count, mean: mean, invstd: invstd, gamma: gamma, beta: beta, relu: relu)
    }

    /// `inputGradient` compiled for AVX-512.
    public static func inputGradientAVX512(_ gy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ relu: UnsafePointer<Float>?,
                                           _ dx: UnsafeMutablePointer<Float>, count: Int, scale k: Float, meanB: Float, meanG: Float,
                                           centre: Float, xhatScale: Float, affineReLU: (gamma: Float, beta: Float)?) {
        inputGradient(gy, x, relu, dx, count: count, scale: k, meanB: meanB, meanG: meanG, centre: centre, xhatScale: xhatScale,
                      affineReLU: affineReLU)
    }

    /// `sums` compiled for AVX-512.
    public static func sumsAVX512(_ x: UnsafePointer<Float>, count: Int, centre: Float?) -> (sum: Float, squares: Float) {
        sums(x, count: count, centre: centre)
    }

    /// `gradientSums` compiled for AVX-512.
    public static func gradientSumsAVX512(_ gy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ relu: UnsafePointer<Float>?,
                                          count: Int, centre: Float, xhatScale: Float,
                                          affineReLU: (gamma: Float, beta: Float)?) -> (Float, Float) {
        gradientSums(gy, x, relu, count: count, centre: centre, xhatScale: xhatScale, affineReLU: affineReLU)
    }
}
