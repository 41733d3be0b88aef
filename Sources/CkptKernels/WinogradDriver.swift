// N images, C channels, H rows, W columns (NCHW).

/// The pipeline shared by Winograd's F(2×2, 3×3) and F(4×4, 3×3): tile rows of the whole batch
/// are cut into bands; each band's input is transformed into `points` matrices `V[ξ]`
/// (`C_in × tiles`), multiplied by the transformed weights into `M[ξ]` (`C_out × tiles`), and
/// transformed back into the output. Both cores take separate bands (single-threaded products,
/// each core's `V` and `M` in its own cache) when there are enough tiles; otherwise bands run one
/// at a time with the transforms and the `points` products dealt out over the cores.
enum WinogradDriver {
    /// Writes `V` for tile rows `rows` at `v`: `V[ξ]` starts `vStride` floats after `V[ξ−1]` and
    /// holds the band's `tiles` tiles, row-major or in microkernel panels.
    typealias InputTransform = (_ rows: Range<Int>, _ v: UnsafeMutablePointer<Float>, _ tiles: Int, _ vStride: Int, _ threaded: Bool) -> Void
    /// `M[ξ] = U[ξ]·V[ξ]`, `M[ξ]` at `m + ξ·C_out·tiles`, row-major with row stride `tiles`.
    typealias Product = (_ xi: Int, _ v: UnsafePointer<Float>, _ vStride: Int, _ m: UnsafeMutablePointer<Float>, _ tiles: Int) -> Void
    /// Writes the output of tile rows `rows` from `M`.
    typealias OutputTransform = (_ m: UnsafePointer<Float>, _ tiles: Int, _ rows: Range<Int>, _ threaded: Bool) -> Void

    static func run(
        images n: Int, inputChannels c: Int, outputChannels cout: Int, tilesH: Int, tilesW: Int, points: Int,
        panelWidth: Int?, input: InputTransform, gemm: Product, output: OutputTransform
    ) {
        // tile rows of all images are numbered together: row r is image r / tilesH
        let totalRows = n * tilesH
        let budgetRows = max(1, min(totalRows, Convolution.columnBudget / max(points * max(c, cout) * tilesW, 1)))
        let workers = Gemm.threadCount
        let splitRows = (totalRows + workers - 1) / workers
        let bandParallel = workers > 1 && totalRows >= workers && min(budgetRows, splitRows) * tilesW >= 32
        let bandRows = bandParallel ? min(budgetRows, splitRows) : budgetRows
        let bandCount = (totalRows + bandRows - 1) / bandRows
        let lanes = bandParallel ? min(workers, bandCount) : 1
        // with the microkernel, V is written in its panel layout (tiles padded to whole panels)
        func padded(_ tiles: Int) -> Int { panelWidth.map { (tiles + $0 - 1) / $0 * $0 } ?? tiles }
        let laneFloats = (points * (c * padded(bandRows * tilesW) + cout * bandRows * tilesW) + 15) / 16 * 16
        withUnsafeTemporaryAllocation(byteCount: lanes * laneFloats * 4, alignment: 64) { sb in
            guard let sp = sb.baseAddress?.bindMemory(to: Float.self, capacity: lanes * laneFloats) else { return }
            let box = UncheckedSendable(sp)
            func band(_ b: Int, lane: Int, threaded: Bool) {
                let v = box.value + lane * laneFloats
                let r0 = b * bandRows, r1 = min(totalRows, r0 + bandRows)
                let tiles = (r1 - r0) * tilesW
                let vStride = c * padded(tiles)
                let m = v + points * vStride
                input(r0 ..< r1, v, tiles, vStride, threaded)
                if threaded && workers > 1 {
                    // few tiles make thin products that split poorly: deal out the points instead
                    Gemm.withThreadCount(1) {
                        parallelFor(workers) { lane in
                            for xi in Swift.stride(from: lane, to: points, by: workers) { gemm(xi, v, vStride, m, tiles) }
                        }
                    }
                } else {
                    for xi in 0 ..< points { gemm(xi, v, vStride, m, tiles) }
                }
                output(m, tiles, r0 ..< r1, threaded)
            }
            if lanes > 1 {
                Gemm.withThreadCount(1) {
                    parallelFor(lanes) { lane in
                        var b = lane
                        while b < bandCount { band(b, lane: lane, threaded: false); b += lanes }
                    }
                }
            } else {
                for b in 0 ..< bandCount { band(b, lane: 0, threaded: true) }
            }
        }
    }
}
