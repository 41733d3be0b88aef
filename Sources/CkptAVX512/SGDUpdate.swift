/// torch's single-tensor SGD update (`torch.optim.SGD`, CPU, float32) on sixteen lanes with fused
/// multiply-adds: the same operations per element in the same order as the portable loop in
/// `CkptTrain/SGD.swift`, so the results are bit for bit the same (and torch's): compiled here,
/// `addingProduct` is one `vfmadd` instead of a call to libm's `fmaf`.
public enum SGDUpdate {
    /// `d = g (+ wd·w)`; with a buffer `b = d` (first step) or `b = b·m + keep·d`, then
    /// `d = d + m·b` (nesterov) or `d = b`; `w = w + step·d`, for elements `range`.
    public static func run(weights w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                           buffer b: UnsafeMutablePointer<Float>?, range: Range<Int>, weightDecay wd: Float,
                           momentum m: Float, keep: Float, nesterov: Bool, first: Bool, step: Float) {
        typealias V = SIMD16<Float>
        var i = range.lowerBound
        let end = range.upperBound
        while i + 16 <= end {
            var d = loadLanes(g + i)
            let wv = loadLanes(w + i)
            if wd != 0 { d = d.addingProduct(wv, wd) }
            if let b {
                let bv = first ? d : (loadLanes(b + i) * m).addingProduct(d, keep)
                storeLanes(bv, b + i)
                d = nesterov ? d.addingProduct(bv, m) : bv
            }
            storeLanes(wv.addingProduct(d, step), w + i)
            i += 16
        }
        while i < end {
            var d = g[i]
            if wd != 0 { d = d.addingProduct(w[i], wd) }
            if let b {
                b[i] = first ? d : (b[i] * m).addingProduct(d, keep)
                d = nesterov ? d.addingProduct(b[i], m) : b[i]
            }
            w[i] = w[i].addingProduct(d, step)
            i += 1
        }
    }
}

/// Sixteen floats from `p` (any alignment), for the optimizer kernels.
@inline(__always) func loadLanes(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

/// Sixteen floats to `p` (any alignment), for the optimizer kernels.
@inline(__always) func storeLanes(_ x: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: x, as: SIMD16<Float>.self)
}
