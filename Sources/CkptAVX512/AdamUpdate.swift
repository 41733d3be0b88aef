/// torch's single-tensor Adam/AdamW moments and update (`torch.optim.Adam(W)`, CPU, float32) on
/// sixteen lanes with fused multiply-adds: per element the operations of the portable loops in
/// `CkptTrain/Adam.swift`, in their order, so the results are bit for bit the same.
public enum AdamUpdate {
    /// For elements `range`: `g' = g (+ decay·w)`; `m = lerp(m, g', lerpWeight)` as torch's lerp
    /// kernel (`m + lw·(g' − m)` for a weight below 0.5, else `g' + (lw − 1)·(g' − m)`);
    /// `v = v·β₂ + (c₂·g')·g'`; `w = w + (scale·m) / (√v / divisor + eps)`.
    public static func run(weights w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                           expAvg m: UnsafeMutablePointer<Float>, expAvgSq v: UnsafeMutablePointer<Float>, range: Range<Int>,
                           coupledDecay decay: Float, lerpWeight lw: Float, beta2 b2: Float, oneMinusBeta2 c2: Float,
                           divisor: Float, eps: Float, scale: Float) {
        typealias V = SIMD16<Float>
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        @inline(__always) func store(_ x: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: x, as: V.self) }
        let small = abs(lw) < 0.5
        var i = range.lowerBound
        let end = range.upperBound
        while i + 16 <= end {
            let wv = load(w + i)
            var gv = load(g + i)
            if decay != 0 { gv = gv.addingProduct(wv, decay) }
            let mv0 = load(m + i)
            let mv = small ? mv0.addingProduct(lw, gv - mv0) : gv.addingProduct(lw - 1, gv - mv0)
            let vv = (load(v + i) * b2).addingProduct(c2 * gv, gv)
            store(mv, m + i)
            store(vv, v + i)
            store(wv + (scale * mv) / (vv.squareRoot() / divisor + eps), w + i)
            i += 16
        }
        while i < end {
            var gi = g[i]
            if decay != 0 { gi = gi.addingProduct(w[i], decay) }
            m[i] = small ? m[i].addingProduct(lw, gi - m[i]) : gi.addingProduct(lw - 1, gi - m[i])
            v[i] = (v[i] * b2).addingProduct(c2 * gi, gi)
            w[i] = w[i] + (scale * m[i]) / (v[i].squareRoot() / divisor + eps)
            i += 1
        }
    }
}
