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
        let small = abs(lw) < 0.5
        var i = range.lowerBound
        let end = range.upperBound
        while i + 16 <= end {
            let wv = loadLanes(w + i)
            var gv = loadLanes(g + i)
            if decay != 0 { gv = gv.addingProduct(wv, decay) }
            let mv0 = loadLanes(m + i)
            let mv = small ? mv0.addingProduct(lw, gv - mv0) : gv.addingProduct(lw - 1, gv - mv0)
            let vv = (loadLanes(v + i) * b2).addingProduct(c2 * gv, gv)
            storeLanes(mv, m + i)
            storeLanes(vv, v + i)
            storeLanes(wv + (scale * mv) / (vv.squareRoot() / divisor + eps), w + i)
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
