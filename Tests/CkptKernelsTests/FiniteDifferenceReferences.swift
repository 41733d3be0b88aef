import CkptKernels
import Foundation
import XCTest

// N images, C channels, H rows, W columns (NCHW). Everything in this file computes in Double:
// naive forwards written from PyTorch's definitions, and central differences taken on them, the
// yardstick for the kernels' Float32 backward passes.

/// Central differences in Double and the comparison of a kernel's gradient with them.
enum FiniteDifference {
    /// The step `h`: small enough that the truncation error (`h²·f'''`) is far below 1e-4, large
    /// enough that Double's rounding of the loss (`≈ 1e-16·|L| / h`) is too.
    static let step = 1e-6

    /// `∂L/∂θ_j ≈ (L(θ + h·e_j) − L(θ − h·e_j)) / 2h` for each `j` in `indices`.
    ///
    /// `loss(θ, j)` may sum only the outputs that can depend on `θ_j`: the others are computed the
    /// same way in both evaluations, so they cancel exactly and leaving them out changes nothing.
    static func gradient(of theta: [Double], at indices: [Int], loss: ([Double], Int) -> Double) -> [Int: Double] {
        var t = theta
        var result: [Int: Double] = [:]
        for j in indices {
            let v = t[j]
            t[j] = v + step
            let plus = loss(t, j)
            t[j] = v - step
            let minus = loss(t, j)
            t[j] = v
            result[j] = (plus - minus) / (2 * step)
        }
        return result
    }

    /// The indices to probe: all of `0..<count` when there are at most `limit`, else `limit`
    /// seeded picks plus `always` (edges that must be seen).
    static func sample(count: Int, limit: Int, always: [Int] = [], seed: UInt64) -> [Int] {
        if count <= limit { return Array(0 ..< count) }
        var rng = SplitMix64(seed: seed)
        var picked = Set(always.filter { $0 >= 0 && $0 < count })
        while picked.count < limit + always.count && picked.count < count { picked.insert(Int(rng.next() % UInt64(count))) }
        return picked.sorted()
    }

    /// `max |kernel_j − reference_j| / max |reference_j|` over the probed indices (the absolute
    /// difference when the reference is all zero; infinite when the kernel gave a NaN).
    static func relativeError(_ kernel: [Float], _ reference: [Int: Double]) -> Double {
        var worst = 0.0, scale = 0.0
        for (j, r) in reference {
            let difference = abs(Double(kernel[j]) - r)
            if difference.isNaN { return .infinity }
            worst = max(worst, difference)
            scale = max(scale, abs(r))
        }
        return scale > 0 ? worst / scale : worst
    }

    /// Fails unless `kernel` matches the central differences within `tolerance` relative to the
    /// gradient's largest magnitude. - Returns: that relative error.
    @discardableResult
    static func check(_ what: String, kernel: DenseTensor?, shape: [Int], reference: [Int: Double], tolerance: Double = 1e-4,
                      file: StaticString = #filePath, line: UInt = #line) -> Double {
        guard let k = kernel else {
            XCTFail("\(what): the kernel returned no gradient", file: file, line: line)
            return .infinity
        }
        XCTAssertEqual(k.shape, shape, "\(what): gradient shape", file: file, line: line)
        guard k.count == shape.reduce(1, *) else { return .infinity }
        let e = relativeError(k.values, reference)
        XCTAssertLessThanOrEqual(e, tolerance, "\(what): kernel gradient differs from the central differences", file: file, line: line)
        return e
    }

    /// Prints one line per case with the largest relative error of each gradient, so the margins
    /// are visible in the log.
    static func report(_ what: String, _ errors: [String: Double], probes: [Int]) {
        let parts = errors.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1e", $0.value))" }
        print("finite differences, \(what): \(parts.joined(separator: ", ")) (probes \(probes.map(String.init).joined(separator: "/")))")
    }

    /// Fails unless the kernel's Float32 forward equals the Double reference within `tolerance`
    /// relative to the output's largest magnitude: the reference describes the kernel.
    static func checkForward(_ what: String, kernel: DenseTensor, reference: [Double], shape: [Int], tolerance: Double = 1e-5,
                             file: StaticString = #filePath, line: UInt = #line) {
        checkForward(what, kernel: kernel, reference: Dictionary(uniqueKeysWithValues: reference.enumerated().map { ($0, $1) }),
                     shape: shape, tolerance: tolerance, file: file, line: line)
    }

    /// `checkForward` at the output elements `reference` holds.
    static func checkForward(_ what: String, kernel: DenseTensor, reference: [Int: Double], shape: [Int], tolerance: Double = 1e-5,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(kernel.shape, shape, "\(what): forward shape", file: file, line: line)
        guard kernel.count == shape.reduce(1, *) else { return }
        var worst = 0.0, scale = 0.0
        for (i, e) in reference {
            // NaN must meet NaN, and an infinity the same infinity
            let k = Double(kernel.values[i])
            if !e.isFinite || !k.isFinite {
                XCTAssertTrue(e == k || (e.isNaN && k.isNaN), "\(what): element \(i) is \(k), expected \(e)", file: file, line: line)
                continue
            }
            worst = max(worst, abs(k - e))
            scale = max(scale, abs(e))
        }
        XCTAssertLessThanOrEqual(worst, tolerance * max(scale, 1e-30), "\(what): forward differs from the Double reference",
                                 file: file, line: line)
    }
}

extension DenseTensor {
    /// The values widened to Double.
    var doubles: [Double] { values.map(Double.init) }
}

extension SplitMix64 {
    /// `count` values uniform in `[-1, 1)`, as Double (the loss weights `r`).
    mutating func doubles(_ count: Int) -> [Double] { (0 ..< count).map { _ in Double(nextSigned()) } }
}

/// `Σ r_i·y_i`: the scalar loss whose gradient with respect to `y` is `r`.
func weightedSum(_ y: [Double], _ r: [Double]) -> Double {
    var s = 0.0
    for i in y.indices { s += r[i] * y[i] }
    return s
}

/// `conv2d` in Double straight from its definition, one output element at a time.
struct ConvolutionReference {
    let g: Conv2dGeometry
    let n, h, w, oh, ow: Int
    let cinG, coutG: Int

    init(_ g: Conv2dGeometry, images n: Int, height h: Int, width w: Int) {
        self.g = g
        self.n = n
        self.h = h
        self.w = w
        // Conv2d's shape formula
        oh = (h + 2 * g.padding.height - g.dilation.height * (g.kernelSize.height - 1) - 1) / g.stride.height + 1
        ow = (w + 2 * g.padding.width - g.dilation.width * (g.kernelSize.width - 1) - 1) / g.stride.width + 1
        cinG = g.inputChannels / g.groups
        coutG = g.outputChannels / g.groups
    }

    var inputShape: [Int] { [n, g.inputChannels, h, w] }
    var outputShape: [Int] { [n, g.outputChannels, oh, ow] }
    var outputCount: Int { outputShape.reduce(1, *) }

    /// `y[img, o, oy, ox] = b[o] + Σ x[img, grp·C_in/g + i, oy·s − p + ki·d, ox·s − p + kj·d] · w[o, i, ki, kj]`
    /// over `i < C_in/g` and the taps inside the image, `grp = o / (C_out/g)`. (Pointers rather
    /// than arrays only because a debug build checks every array subscript.)
    func output(_ x: UnsafePointer<Double>, _ wt: UnsafePointer<Double>, _ b: [Double]?, _ index: Int) -> Double {
        let ox = index % ow, oy = (index / ow) % oh, o = (index / (ow * oh)) % g.outputChannels, img = index / (ow * oh * g.outputChannels)
        let kh = g.kernelSize.height, kw = g.kernelSize.width
        let grp = o / coutG
        var s = b?[o] ?? 0
        for i in 0 ..< cinG {
            let c = grp * cinG + i
            for ki in 0 ..< kh {
                let iy = oy * g.stride.height - g.padding.height + ki * g.dilation.height
                if iy < 0 || iy >= h { continue }
                for kj in 0 ..< kw {
                    let ix = ox * g.stride.width - g.padding.width + kj * g.dilation.width
                    if ix < 0 || ix >= w { continue }
                    s += x[((img * g.inputChannels + c) * h + iy) * w + ix] * wt[((o * cinG + i) * kh + ki) * kw + kj]
                }
            }
        }
        return s
    }

    func forward(_ x: [Double], _ wt: [Double], _ b: [Double]?) -> [Double] {
        x.withUnsafeBufferPointer { xp in
            wt.withUnsafeBufferPointer { wp in
                (0 ..< outputCount).map { output(xp.baseAddress!, wp.baseAddress!, b, $0) }
            }
        }
    }

    /// `Σ r·y` over `outputs`.
    func loss(_ x: [Double], _ wt: [Double], _ b: [Double]?, _ r: [Double], outputs: [Int]) -> Double {
        x.withUnsafeBufferPointer { xp in
            wt.withUnsafeBufferPointer { wp in
                var s = 0.0
                for i in outputs { s += r[i] * output(xp.baseAddress!, wp.baseAddress!, b, i) }
                return s
            }
        }
    }

    /// Outputs whose window spans input element `j`'s row and column, in its image and its group's
    /// channels (a superset of those that read it).
    func outputs(readingInput j: Int) -> [Int] {
        let ix = j % w, iy = (j / w) % h, c = (j / (w * h)) % g.inputChannels, img = j / (w * h * g.inputChannels)
        let grp = c / cinG
        let spanH = g.dilation.height * (g.kernelSize.height - 1), spanW = g.dilation.width * (g.kernelSize.width - 1)
        let rows = (0 ..< oh).filter { oy in
            let y0 = oy * g.stride.height - g.padding.height
            return y0 <= iy && iy <= y0 + spanH
        }
        let cols = (0 ..< ow).filter { ox in
            let x0 = ox * g.stride.width - g.padding.width
            return x0 <= ix && ix <= x0 + spanW
        }
        var result: [Int] = []
        for o in grp * coutG ..< (grp + 1) * coutG {
            for oy in rows {
                for ox in cols { result.append(((img * g.outputChannels + o) * oh + oy) * ow + ox) }
            }
        }
        return result
    }

    /// Every output of channel `o` (all that read `w[o, …]` or `b[o]`).
    func outputs(ofChannel o: Int) -> [Int] {
        var result: [Int] = []
        for img in 0 ..< n {
            let base = (img * g.outputChannels + o) * oh * ow
            result.append(contentsOf: base ..< base + oh * ow)
        }
        return result
    }
}

/// `conv_transpose2d` in Double as the scatter that defines it: every input element adds
/// `x · w[c, o, ki, kj]` at `(iy·s − p + ki·d, ix·s − p + kj·d)` of the output channels of its group.
struct TransposedConvolutionReference {
    let g: Conv2dGeometry
    let n, h, w, oh, ow: Int
    let cinG, coutG: Int

    init(_ g: Conv2dGeometry, images n: Int, height h: Int, width w: Int) {
        self.g = g
        self.n = n
        self.h = h
        self.w = w
        // ConvTranspose2d's shape formula
        oh = (h - 1) * g.stride.height - 2 * g.padding.height + g.dilation.height * (g.kernelSize.height - 1)
            + g.outputPadding.height + 1
        ow = (w - 1) * g.stride.width - 2 * g.padding.width + g.dilation.width * (g.kernelSize.width - 1)
            + g.outputPadding.width + 1
        cinG = g.inputChannels / g.groups
        coutG = g.outputChannels / g.groups
    }

    var inputShape: [Int] { [n, g.inputChannels, h, w] }
    var outputShape: [Int] { [n, g.outputChannels, oh, ow] }

    func forward(_ x: [Double], _ wt: [Double], _ b: [Double]?) -> [Double] {
        let kh = g.kernelSize.height, kw = g.kernelSize.width
        var y = [Double](repeating: 0, count: outputShape.reduce(1, *))
        for img in 0 ..< n {
            for c in 0 ..< g.inputChannels {
                let grp = c / cinG
                for iy in 0 ..< h {
                    for ix in 0 ..< w {
                        let v = x[((img * g.inputChannels + c) * h + iy) * w + ix]
                        for o in 0 ..< coutG {
                            for ki in 0 ..< kh {
                                let oy = iy * g.stride.height - g.padding.height + ki * g.dilation.height
                                if oy < 0 || oy >= oh { continue }
                                for kj in 0 ..< kw {
                                    let ox = ix * g.stride.width - g.padding.width + kj * g.dilation.width
                                    if ox < 0 || ox >= ow { continue }
                                    y[((img * g.outputChannels + grp * coutG + o) * oh + oy) * ow + ox]
                                        += v * wt[((c * coutG + o) * kh + ki) * kw + kj]
                                }
                            }
                        }
                    }
                }
            }
        }
        if let b {
            for i in y.indices { y[i] += b[(i / (oh * ow)) % g.outputChannels] }
        }
        return y
    }
}

/// `batch_norm` in Double: per channel over the `N·H·W` values, with the batch's mean and biased
/// variance (training) or the running statistics (eval), then `γ·x̂ + β`.
func referenceBatchNorm(_ x: [Double], shape: [Int], gamma: [Double], beta: [Double], epsilon: Double,
                        running: (mean: [Double], variance: [Double])? = nil) -> [Double] {
    let n = shape[0], c = shape[1]
    let plane = shape.dropFirst(2).reduce(1, *)
    var y = x
    for ch in 0 ..< c {
        var members: [Int] = []
        for img in 0 ..< n {
            let start = (img * c + ch) * plane
            members += start ..< start + plane
        }
        let mean: Double, variance: Double
        if let running {
            mean = running.mean[ch]
            variance = running.variance[ch]
        } else {
            mean = members.reduce(0) { $0 + x[$1] } / Double(members.count)
            variance = members.reduce(0) { $0 + (x[$1] - mean) * (x[$1] - mean) } / Double(members.count)
        }
        for i in members { y[i] = gamma[ch] * (x[i] - mean) / (variance + epsilon).squareRoot() + beta[ch] }
    }
    return y
}

/// The parameters of one pooling window rule, with ATen's `pooling_output_shape`.
struct PoolReference {
    let k, s, p, d: Int
    let ceilMode: Bool

    init(_ g: PoolGeometry) {
        k = g.kernelSize
        s = g.stride
        p = g.padding
        d = g.dilation
        ceilMode = g.ceilMode
    }

    /// Output length along an axis of `size`: floor or ceil of `(size + 2p − d(k−1) − 1)/s` plus one,
    /// less the last window when ceil_mode starts it in the right padding.
    func outputLength(_ size: Int) -> Int {
        let span = size + 2 * p - d * (k - 1) - 1
        var out = (ceilMode ? (span + s - 1) / s : span / s) + 1
        if ceilMode && (out - 1) * s >= size + p { out -= 1 }
        return out
    }

    /// `max_pool2d` with indices: per window, ATen's scan (`val > maxval || isnan(val)` in row-major
    /// tap order from the first tap inside the image): the first largest wins, a NaN beats
    /// everything, a later NaN beats an earlier one. Returns the output and, per output element,
    /// the flat index of the winner in the whole input.
    func maximum(_ x: [Double], shape: [Int]) -> (values: [Double], winners: [Int], shape: [Int]) {
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let oh = outputLength(h), ow = outputLength(w)
        var values: [Double] = [], winners: [Int] = []
        for pl in 0 ..< planes {
            for oy in 0 ..< oh {
                for ox in 0 ..< ow {
                    var best = -Double.infinity
                    var winner: Int?
                    for ki in 0 ..< k {
                        let iy = oy * s - p + ki * d
                        if iy < 0 || iy >= h { continue }
                        for kj in 0 ..< k {
                            let ix = ox * s - p + kj * d
                            if ix < 0 || ix >= w { continue }
                            let at = (pl * h + iy) * w + ix
                            if winner == nil { winner = at }
                            if x[at] > best || x[at].isNaN {
                                best = x[at]
                                winner = at
                            }
                        }
                    }
                    values.append(best)
                    winners.append(winner ?? -1)
                }
            }
        }
        return (values, winners, [shape[0], shape[1], oh, ow])
    }

    /// `avg_pool2d` with ATen's divisor: the window clipped to the padded input (`count_include_pad`)
    /// or to the input itself.
    func average(_ x: [Double], shape: [Int], countIncludePad: Bool) -> (values: [Double], shape: [Int]) {
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let oh = outputLength(h), ow = outputLength(w)
        var values: [Double] = []
        for pl in 0 ..< planes {
            for oy in 0 ..< oh {
                for ox in 0 ..< ow {
                    let rows = (oy * s - p) ..< min(oy * s - p + k, h + p)
                    let cols = (ox * s - p) ..< min(ox * s - p + k, w + p)
                    var sum = 0.0, inside = 0
                    for iy in rows where iy >= 0 && iy < h {
                        for ix in cols where ix >= 0 && ix < w {
                            sum += x[(pl * h + iy) * w + ix]
                            inside += 1
                        }
                    }
                    values.append(sum / Double(countIncludePad ? rows.count * cols.count : inside))
                }
            }
        }
        return (values, [shape[0], shape[1], oh, ow])
    }
}

/// `adaptive_avg_pool2d` in Double: window `i` of `out` over `size` spans `[⌊i·size/out⌋, ⌈(i+1)·size/out⌉)`.
func referenceAdaptiveAverage(_ x: [Double], shape: [Int], outputHeight oh: Int, outputWidth ow: Int) -> [Double] {
    let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
    func window(_ i: Int, _ out: Int, _ size: Int) -> Range<Int> { (i * size / out) ..< (((i + 1) * size + out - 1) / out) }
    var values: [Double] = []
    for pl in 0 ..< planes {
        for oy in 0 ..< oh {
            for ox in 0 ..< ow {
                let rows = window(oy, oh, h), cols = window(ox, ow, w)
                var sum = 0.0
                for iy in rows {
                    for ix in cols { sum += x[(pl * h + iy) * w + ix] }
                }
                values.append(sum / Double(rows.count * cols.count))
            }
        }
    }
    return values
}

/// `linear` in Double: `y[i, o] = b[o] + Σ_j x[i, j]·W[o, j]`, one element.
func referenceLinear(_ x: [Double], _ wt: [Double], _ b: [Double]?, inFeatures: Int, outFeatures: Int, _ index: Int) -> Double {
    let i = index / outFeatures, o = index % outFeatures
    var s = b?[o] ?? 0
    for j in 0 ..< inFeatures { s += x[i * inFeatures + j] * wt[o * inFeatures + j] }
    return s
}
