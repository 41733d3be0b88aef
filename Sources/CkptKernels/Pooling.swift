// N images, C channels, H rows, W columns (NCHW).

/// Window geometry shared by max and average pooling.
///
/// PyTorch counterpart: the arguments of `torch.nn.MaxPool2d` / `AvgPool2d`.
public struct PoolGeometry: Sendable, Hashable {
    /// Window rows and columns (`kernel_size`).
    public var kernelSize: Int
    /// Step between windows (`stride`; torch defaults it to `kernel_size`).
    public var stride: Int
    /// Implicit padding on each side (`padding`), at most half the kernel.
    public var padding: Int
    /// Spacing between window taps (`dilation`; max pooling only).
    public var dilation: Int
    /// Round the output size up instead of down (`ceil_mode`).
    public var ceilMode: Bool

    /// A square pooling window.
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, dilation: Int = 1, ceilMode: Bool = false) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        self.dilation = dilation
        self.ceilMode = ceilMode
    }

    /// Output length along one axis of length `size` (`pooling_output_shape` in ATen): with
    /// `ceil_mode`, a last window that would start inside the right padding is dropped.
    /// - Throws: `KernelError.invalidArgument` for bad settings or an empty output.
    public func outputLength(_ size: Int, operation: String) throws -> Int {
        guard kernelSize >= 1, stride >= 1, dilation >= 1, padding >= 0, padding * 2 <= kernelSize else {
            throw KernelError.invalidArgument(operation: operation, message: "bad pooling geometry \(self)")
        }
        let span = size + 2 * padding - dilation * (kernelSize - 1) - 1
        guard span >= 0 else {
            throw KernelError.invalidArgument(operation: operation, message: "input length \(size) is smaller than the window \(kernelSize)")
        }
        var out = (ceilMode ? (span + stride - 1) / stride : span / stride) + 1
        if ceilMode && (out - 1) * stride >= size + padding { out -= 1 }
        return out
    }
}

extension PoolGeometry {
    /// The input cells `start ..< end` that average-pooling window `o` covers along an axis of
    /// `size`, and the span the divisor counts with padding (ATen: padding cells count, cells past
    /// the padding never).
    func averageWindow(_ o: Int, size: Int) -> (start: Int, end: Int, paddedSpan: Int) {
        let start = o * stride - padding
        let end = min(start + kernelSize, size + padding)
        return (max(start, 0), min(end, size), end - start)
    }
}

extension Pooling {
    /// Adaptive pooling window `o` of `outputs` over an axis of `size`: `[⌊o·size/outputs⌋, ⌈(o+1)·size/outputs⌉)`.
    static func adaptiveWindow(_ o: Int, size: Int, outputs: Int) -> Range<Int> {
        (o * size) / outputs ..< ((o + 1) * size + outputs - 1) / outputs
    }
}

/// Max, average and adaptive average pooling forwards.
///
/// A backward for max pooling needs the argmax of each window; for average pooling only the
/// geometry. PyTorch counterparts: `max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d`.
public enum Pooling {
    /// `max_pool2d(x)`: the largest element of each window; padding never wins; NaN propagates.
    /// - Throws: `KernelError` when the input is not NCHW or the geometry is invalid.
    public static func maxForward(_ input: DenseTensor, geometry g: PoolGeometry) throws -> DenseTensor {
        let op = "max_pool2d"
        let (n, c, h, w) = try input.nchw(for: op)
        let oh = try g.outputLength(h, operation: op), ow = try g.outputLength(w, operation: op)
        var out = [Float].uninitialized(n * c * oh * ow)  // every window writes its element
        input.values.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { yb in
                guard let x = xb.baseAddress, let y = yb.baseAddress else { return }
                let box = UncheckedSendable((x, y))
                // 2×2 windows at stride 2 wholly inside the plane (VGG's and SegNet's pools)
                let halving = g.kernelSize == 2 && g.stride == 2 && g.padding == 0 && g.dilation == 1
                    && 2 * oh <= h && 2 * ow <= w
                parallelForWork(n * c, elementsPerItem: h * w) { p in
                    let src = box.value.0 + p * h * w
                    let dst = box.value.1 + p * oh * ow
                    if halving {
                        halvingMax(src, width: w, into: dst, outputHeight: oh, outputWidth: ow)
                        return
                    }
                    if g.dilation == 1 {
                        // the row's max sits at scratch[1...w]; one slot before and 33 after hold −inf
                        // (the implicit padding), so the 3×3/2 pass below can load whole vectors
                        withUnsafeTemporaryAllocation(of: Float.self, capacity: w + 34) { row in
                            guard let r = row.baseAddress else { return }
                            r.initialize(repeating: -.infinity, count: w + 34)
                            separableMax(src, height: h, width: w, geometry: g, into: dst, outputHeight: oh, outputWidth: ow,
                                         scratch: r + 1)
                        }
                        return
                    }
                    let k = g.kernelSize, d = g.dilation
                    for oy in 0 ..< oh {
                        // taps inside the image: ki in [k0, k1)
                        let y0 = oy * g.stride - g.padding
                        let k0 = y0 < 0 ? (-y0 + d - 1) / d : 0
                        let k1 = min(k, (h - y0 + d - 1) / d)
                        for ox in 0 ..< ow {
                            let x0 = ox * g.stride - g.padding
                            let j0 = x0 < 0 ? (-x0 + d - 1) / d : 0
                            let j1 = min(k, (w - x0 + d - 1) / d)
                            var m = -Float.infinity
                            var ki = k0
                            while ki < k1 {
                                let row = src + (y0 + ki * d) * w + x0
                                var kj = j0
                                while kj < j1 {
                                    let v = row[kj * d]
                                    // NaN wins, as in torch
                                    if !(v <= m) { m = v; if v.isNaN { ki = k1; break } }
                                    kj += 1
                                }
                                ki += 1
                            }
                            dst[oy * ow + ox] = m
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [n, c, oh, ow], values: out)
    }

    /// Max pooling without dilation as two passes per output row: the element-wise max of the
    /// window's input rows (vectorised, into `scratch` of `width` floats), then the max of each
    /// window's columns of that row. Every window holds at least one input element (padding is
    /// at most half the kernel and `outputLength` drops windows starting in the padding).
    private static func separableMax(_ src: UnsafePointer<Float>, height h: Int, width w: Int, geometry g: PoolGeometry,
                                     into dst: UnsafeMutablePointer<Float>, outputHeight oh: Int, outputWidth ow: Int,
                                     scratch: UnsafeMutablePointer<Float>) {
        let k = g.kernelSize
        for oy in 0 ..< oh {
            let y0 = oy * g.stride - g.padding
            let r0 = max(0, y0), r1 = min(h, y0 + k)
            scratch.update(from: src + r0 * w, count: w)
            var r = r0 + 1
            while r < r1 {
                let line = src + r * w
                var i = 0
                while i + 8 <= w {
                    let a = UnsafeRawPointer(scratch + i).loadUnaligned(as: SIMD8<Float>.self)
                    let b = UnsafeRawPointer(line + i).loadUnaligned(as: SIMD8<Float>.self)
                    UnsafeMutableRawPointer(scratch + i).storeBytes(of: pickLarger(a, b), as: SIMD8<Float>.self)
                    i += 8
                }
                while i < w { scratch[i] = larger(scratch[i], line[i]); i += 1 }
                r += 1
            }
            let out = dst + oy * ow
            var first = 0
            if k == 3 && g.stride == 2 && g.padding == 1 {
                // ResNet's stem pool: output ox takes columns 2·ox − 1 … 2·ox + 1; sixteen at a time
                // from the even and odd lanes of two 32-float loads (scratch[−1] and past w are −inf)
                while first + 16 <= ow {
                    let a = UnsafeRawPointer(scratch + 2 * first - 1).loadUnaligned(as: SIMD32<Float>.self)
                    let b = UnsafeRawPointer(scratch + 2 * first + 1).loadUnaligned(as: SIMD32<Float>.self)
                    let m = pickLarger16(pickLarger16(a.evenHalf, a.oddHalf), b.evenHalf)
                    UnsafeMutableRawPointer(out + first).storeBytes(of: m, as: SIMD16<Float>.self)
                    first += 16
                }
            }
            for ox in first ..< ow {
                let x0 = ox * g.stride - g.padding
                let c0 = max(0, x0), c1 = min(w, x0 + k)
                var m = scratch[c0]
                var c = c0 + 1
                while c < c1 { m = larger(m, scratch[c]); c += 1 }
                out[ox] = m
            }
        }
    }

    /// `b` where `b > a` or `b` is NaN, else `a`: NaN wins from either side, as in torch.
    @inline(__always) private static func pickLarger(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        a.replacing(with: b, where: (b .> a) .| (b .!= b))
    }

    /// `pickLarger` on 16 lanes.
    @inline(__always) private static func pickLarger16(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
        a.replacing(with: b, where: (b .> a) .| (b .!= b))
    }

    /// The scalar `pickLarger`; a NaN already in `m` stays.
    @inline(__always) private static func larger(_ m: Float, _ v: Float) -> Float { !m.isNaN && (v > m || v.isNaN) ? v : m }

    /// 2×2, stride-2 max over a plane whose windows all lie inside it, eight outputs per step.
    private static func halvingMax(_ src: UnsafePointer<Float>, width w: Int, into dst: UnsafeMutablePointer<Float>,
                                   outputHeight oh: Int, outputWidth ow: Int) {
        for oy in 0 ..< oh {
            let r0 = src + 2 * oy * w, r1 = r0 + w
            let out = dst + oy * ow
            var ox = 0
            while ox + 8 <= ow {
                let a = pickLarger(UnsafeRawPointer(r0 + 2 * ox).loadUnaligned(as: SIMD8<Float>.self),
                             UnsafeRawPointer(r1 + 2 * ox).loadUnaligned(as: SIMD8<Float>.self))
                let b = pickLarger(UnsafeRawPointer(r0 + 2 * ox + 8).loadUnaligned(as: SIMD8<Float>.self),
                             UnsafeRawPointer(r1 + 2 * ox + 8).loadUnaligned(as: SIMD8<Float>.self))
                let even = SIMD8(lowHalf: a.evenHalf, highHalf: b.evenHalf)
                let odd = SIMD8(lowHalf: a.oddHalf, highHalf: b.oddHalf)
                UnsafeMutableRawPointer(out + ox).storeBytes(of: pickLarger(even, odd), as: SIMD8<Float>.self)
                ox += 8
            }
            while ox < ow {
                out[ox] = larger(larger(larger(r0[2 * ox], r0[2 * ox + 1]), r1[2 * ox]), r1[2 * ox + 1])
                ox += 1
            }
        }
    }

    /// `avg_pool2d(x)` with `count_include_pad` (torch's default) or not; dilation must be 1.
    /// - Throws: `KernelError` when the input is not NCHW or the geometry is invalid.
    public static func averageForward(_ input: DenseTensor, geometry g: PoolGeometry, countIncludePad: Bool = true) throws -> DenseTensor {
        let op = "avg_pool2d"
        let (n, c, h, w) = try input.nchw(for: op)
        guard g.dilation == 1 else { throw KernelError.invalidArgument(operation: op, message: "dilation must be 1") }
        let oh = try g.outputLength(h, operation: op), ow = try g.outputLength(w, operation: op)
        var out = [Float].uninitialized(n * c * oh * ow)  // every window writes its element
        input.values.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { yb in
                guard let x = xb.baseAddress, let y = yb.baseAddress else { return }
                let box = UncheckedSendable((x, y))
                parallelForWork(n * c, elementsPerItem: h * w) { p in
                    let src = box.value.0 + p * h * w
                    let dst = box.value.1 + p * oh * ow
                    for oy in 0 ..< oh {
                        let (y0, y1, rows) = g.averageWindow(oy, size: h)
                        for ox in 0 ..< ow {
                            let (x0, x1, cols) = g.averageWindow(ox, size: w)
                            var s: Float = 0
                            for iy in y0 ..< max(y0, y1) {
                                for ix in x0 ..< max(x0, x1) { s += src[iy * w + ix] }
                            }
                            let divisor = countIncludePad ? rows * cols : max(y1 - y0, 0) * max(x1 - x0, 0)
                            dst[oy * ow + ox] = divisor > 0 ? s / Float(divisor) : 0
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [n, c, oh, ow], values: out)
    }

    /// `adaptive_avg_pool2d(x, (outH, outW))`: window `i` spans `[⌊i·H/outH⌋, ⌈(i+1)·H/outH⌉)`.
    /// - Throws: `KernelError` when the input is not NCHW or an output size is not positive.
    public static func adaptiveAverageForward(_ input: DenseTensor, outputHeight oh: Int, outputWidth ow: Int) throws -> DenseTensor {
        let op = "adaptive_avg_pool2d"
        let (n, c, h, w) = try input.nchw(for: op)
        guard oh >= 1, ow >= 1 else { throw KernelError.invalidArgument(operation: op, message: "output size \(oh)×\(ow) must be positive") }
        guard h >= 1, w >= 1 else { throw KernelError.invalidArgument(operation: op, message: "input plane \(h)×\(w) is empty") }
        var out = [Float].uninitialized(n * c * oh * ow)  // every window writes its element
        input.values.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { yb in
                guard let x = xb.baseAddress, let y = yb.baseAddress else { return }
                let box = UncheckedSendable((x, y))
                parallelForWork(n * c, elementsPerItem: h * w) { p in
                    let src = box.value.0 + p * h * w
                    let dst = box.value.1 + p * oh * ow
                    for oy in 0 ..< oh {
                        let rows = adaptiveWindow(oy, size: h, outputs: oh)
                        for ox in 0 ..< ow {
                            let cols = adaptiveWindow(ox, size: w, outputs: ow)
                            var s: Float = 0
                            for iy in rows {
                                for ix in cols { s += src[iy * w + ix] }
                            }
                            dst[oy * ow + ox] = s / Float(rows.count * cols.count)
                        }
                    }
                }
            }
        }
        return DenseTensor(uncheckedShape: [n, c, oh, ow], values: out)
    }
}
