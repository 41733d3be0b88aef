@testable import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// F(4×4, 3×3)'s vectorised transforms (`WinogradInput4x4`, `WinogradOutput4x4`, 16 tiles per
/// vector) against the same arithmetic written out tile by tile, bit for bit: rows of the patch
/// first, then columns, each `Bᵀ` or `Aᵀ` in the same order. Bands whose 16-tile groups span tile
/// rows and images, a last group of fewer than 16 tiles, planes of 7×7 (ResNet's layer4), odd
/// sizes (tiles half outside the output), no padding, a band starting inside an image; the output
/// with and without bias, ReLU and a residual.
final class WinogradTransformTests: XCTestCase {
    /// `Bᵀ·d` for six values, in `WinogradInput4x4.bt`'s order.
    private func bt(_ d: [Float]) -> [Float] {
        let a = d[4] - 4 * d[2], b = d[3] - 4 * d[1]
        let c = d[4] - d[2], e = 2 * (d[3] - d[1])
        return [4 * d[0] - 5 * d[2] + d[4], a + b, a - b, c + e, c - e, 4 * d[1] - 5 * d[3] + d[5]]
    }

    func testVectorisedTransformEqualsTileByTile() throws {
        try XCTSkipUnless(Microkernel.isSupported, "the transform is compiled for AVX-512")
        var rng = SplitMix64(seed: 0x3164)
        // (n, channels, h, w, padding, band rows as a fraction: first, count; nil for all)
        let cases: [(Int, Int, Int, Int, Int, (Int, Int)?)] = [
            (2, 3, 7, 7, 1, nil),        // 2×2 tiles per image: 8 tiles, one partial group
            (1, 2, 28, 28, 1, nil),      // 7 tiles per row: groups span tile rows; 49 tiles
            (3, 2, 14, 13, 1, (2, 9)),   // odd width, a band from inside image 0 into image 2
            (1, 2, 10, 30, 0, nil),      // no padding: 2×7 tiles
            (2, 1, 40, 40, 1, (3, 12)),  // 10 tiles per row, 120 tiles: three panels of 48 columns
        ]
        for (n, c, h, w, p, band) in cases {
            let (oh, ow) = (h + 2 * p - 2, w + 2 * p - 2)
            let (tilesH, tilesW) = ((oh + 3) / 4, (ow + 3) / 4)
            let rows = band.map { $0.0 ..< $0.0 + $0.1 } ?? 0 ..< n * tilesH
            let tiles = rows.count * tilesW
            let paddedTiles = (tiles + 47) / 48 * 48
            let xiStride = c * paddedTiles
            let x = try rng.tensor([n, c, h, w], scale: 1).values
            var v = [Float](repeating: .nan, count: 36 * xiStride + 16)
            x.withUnsafeBufferPointer { xb in
                v.withUnsafeMutableBufferPointer { vb in
                    guard let xp = xb.baseAddress, let vp = vb.baseAddress else { return }
                    for ch in 0 ..< c {
                        Microkernel.winograd4x4Input(xp, channels: c, height: h, width: w, padding: (p, p), tilesH: tilesH,
                                                     tilesW: tilesW, rows: rows, channel: ch, into: vp, xiStride: xiStride)
                    }
                }
            }
            var mismatches = 0
            for (local, gr) in rows.enumerated() {
                let img = gr / tilesH, ty = gr % tilesH
                for tx in 0 ..< tilesW {
                    let t = local * tilesW + tx
                    for ch in 0 ..< c {
                        func input(_ r: Int, _ k: Int) -> Float {
                            let iy = ty * 4 - p + r, ix = tx * 4 - p + k
                            return iy >= 0 && iy < h && ix >= 0 && ix < w ? x[((img * c + ch) * h + iy) * w + ix] : 0
                        }
                        // rows of the patch combined first (one column at a time), then columns
                        let columns = (0 ..< 6).map { k in bt((0 ..< 6).map { r in input(r, k) }) }
                        for i in 0 ..< 6 {
                            let out = bt((0 ..< 6).map { k in columns[k][i] })
                            for j in 0 ..< 6 {
                                let got = v[(6 * i + j) * xiStride + (t / 48 * c + ch) * 48 + t % 48]
                                if got.bitPattern != out[j].bitPattern { mismatches += 1 }
                            }
                        }
                    }
                }
            }
            XCTAssertEqual(mismatches, 0, "case \((n, c, h, w, p, band.map { "\($0)" } ?? "all"))")
        }
    }

    /// `Aᵀ·m` for six values, in `WinogradOutput4x4.at`'s order.
    private func at(_ m: [Float]) -> [Float] {
        let a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4]
        return [m[0] + a + c, b + 2 * d, a + 4 * c, b + 8 * d + m[5]]
    }

    func testVectorisedOutputTransformEqualsTileByTile() throws {
        try XCTSkipUnless(Microkernel.isSupported, "the transform is compiled for AVX-512")
        var rng = SplitMix64(seed: 0x0a74)
        // (n, output channels, output h, w, band rows: first, count; nil for all)
        let cases: [(Int, Int, Int, Int, (Int, Int)?)] = [
            (2, 3, 7, 7, nil),        // 2×2 tiles per image, the last row and column of tiles 3 wide
            (1, 2, 28, 28, nil),      // 7 tiles per row: groups span tile rows
            (3, 2, 13, 11, (2, 9)),   // odd sizes, a band from inside image 0 into image 2
            (2, 1, 40, 40, (3, 12)),  // 120 tiles
        ]
        for (n, cout, oh, ow, band) in cases {
            let (tilesH, tilesW) = ((oh + 3) / 4, (ow + 3) / 4)
            let rows = band.map { $0.0 ..< $0.0 + $0.1 } ?? 0 ..< n * tilesH
            let tiles = rows.count * tilesW
            let m = try rng.tensor([36 * cout * tiles], scale: 1).values
            let residual = try rng.tensor([n, cout, oh, ow], scale: 1).values
            let bias = try rng.tensor([cout], scale: 0.5).values
            for (relu, withResidual) in [(true, true), (true, false), (false, true)] {
                var y = [Float](repeating: .nan, count: n * cout * oh * ow)
                m.withUnsafeBufferPointer { mb in
                    residual.withUnsafeBufferPointer { rb in
                        y.withUnsafeMutableBufferPointer { yb in
                            guard let mp = mb.baseAddress, let rp = rb.baseAddress, let yp = yb.baseAddress else { return }
                            for o in 0 ..< cout {
                                Microkernel.winograd4x4Output(mp, outputChannels: cout, tiles: tiles, channel: o, rows: rows,
                                                              tilesH: tilesH, tilesW: tilesW, outputHeight: oh, outputWidth: ow,
                                                              bias: bias[o], relu: relu, into: yp, residual: withResidual ? rp : nil)
                            }
                        }
                    }
                }
                var mismatches = 0
                for (local, gr) in rows.enumerated() {
                    let img = gr / tilesH, ty = gr % tilesH
                    for tx in 0 ..< tilesW {
                        let t = local * tilesW + tx
                        for o in 0 ..< cout {
                            func value(_ xi: Int) -> Float { m[(xi * cout + o) * tiles + t] }
                            // along i for each column j, then along j for each row a
                            let columns = (0 ..< 6).map { j in at((0 ..< 6).map { i in value(6 * i + j) }) }
                            for a in 0 ..< 4 where ty * 4 + a < oh {
                                let out = at((0 ..< 6).map { j in columns[j][a] })
                                for b in 0 ..< 4 where tx * 4 + b < ow {
                                    let index = ((img * cout + o) * oh + ty * 4 + a) * ow + tx * 4 + b
                                    var expected = out[b] + bias[o]
                                    if withResidual { expected = expected + residual[index] }
                                    if relu { expected = max(expected, 0) }
                                    if y[index].bitPattern != expected.bitPattern { mismatches += 1 }
                                }
                            }
                        }
                    }
                }
                XCTAssertEqual(mismatches, 0, "case \((n, cout, oh, ow, band.map { "\($0)" } ?? "all")) relu \(relu) residual \(withResidual)")
            }
        }
    }
}
