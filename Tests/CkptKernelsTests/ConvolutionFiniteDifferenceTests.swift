@testable import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW); conv2d weights are [C_out, C_in/groups, kH, kW],
// conv_transpose2d weights [C_in, C_out/groups, kH, kW].

/// `Convolution.backward` and `TransposedConvolution.backward` against central differences (in
/// Double) of a naive Double forward, with `dOutput = r` for the loss `L = Σ r·y`.
final class ConvolutionFiniteDifferenceTests: XCTestCase {
    /// How many elements of each operand are probed (all of them when there are fewer): large
    /// cases probe few, since every probe of a weight re-evaluates a whole output channel.
    struct Probes {
        var input = 400
        var weight = 400
        var bias = 8
        /// Output elements the forward is compared at; nil for all.
        var output: Int?
        /// Input elements always probed; nil for the edges of the first and the last plane.
        var inputAlways: [Int]?
    }

    /// Every conv2d gradient within 1e-4 of the central differences (relative to the gradient's
    /// largest magnitude), under 1, 2 and 3 threads (1 lane, then images dealt to 2 and 3 lanes
    /// each with its own `dWeight`) and with the microkernel on and off (the forward paths the
    /// flipped-weight `dInput` runs on differ).
    /// An input element no window reads (a last row or column a stride never reaches) must get
    /// exactly zero.
    func checkConvolution(_ name: String, images n: Int, height h: Int, width w: Int, geometry g: Conv2dGeometry,
                          bias: Bool = true, probes: Probes = Probes(), seed: UInt64,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let ref = ConvolutionReference(g, images: n, height: h, width: w)
        var rng = SplitMix64(seed: seed)
        let fanIn = Float(ref.cinG * g.kernelSize.height * g.kernelSize.width)
        let x = try rng.tensor(ref.inputShape, scale: 1)
        let wt = try rng.tensor(g.convolutionWeightShape, scale: 1 / fanIn.squareRoot())
        let b = bias ? try rng.tensor([g.outputChannels], scale: 0.5) : nil
        let r = rng.doubles(ref.outputCount)
        let dY = try DenseTensor(shape: ref.outputShape, values: r.map(Float.init))
        // without a bias the loss still has one: ∂L/∂b at b = 0 is what dBias must hold
        let (xd, wd, bd) = (x.doubles, wt.doubles, b?.doubles ?? [Double](repeating: 0, count: g.outputChannels))

        let outputIndices = FiniteDifference.sample(count: ref.outputCount, limit: probes.output ?? ref.outputCount, seed: seed &+ 4)
        let expected = xd.withUnsafeBufferPointer { xp in
            wd.withUnsafeBufferPointer { wp in
                Dictionary(uniqueKeysWithValues: outputIndices.map { ($0, ref.output(xp.baseAddress!, wp.baseAddress!, bias ? bd : nil, $0)) })
            }
        }
        let edges = probes.inputAlways
            ?? planeEdges(ref.inputShape, image: 0, channel: 0) + planeEdges(ref.inputShape, image: n - 1, channel: g.inputChannels - 1)
        let inputIndices = FiniteDifference.sample(count: x.count, limit: probes.input, always: edges, seed: seed &+ 1)
        let dX = FiniteDifference.gradient(of: xd, at: inputIndices) { xs, j in
            ref.loss(xs, wd, bd, r, outputs: ref.outputs(readingInput: j))
        }
        let unread = inputIndices.filter { ref.outputs(readingInput: $0).isEmpty }
        let perChannel = wt.count / g.outputChannels
        let dW = FiniteDifference.gradient(of: wd, at: FiniteDifference.sample(count: wt.count, limit: probes.weight, seed: seed &+ 2)) {
            ws, j in ref.loss(xd, ws, bd, r, outputs: ref.outputs(ofChannel: j / perChannel))
        }
        let dB = FiniteDifference.gradient(of: bd, at: FiniteDifference.sample(count: bd.count, limit: probes.bias, seed: seed &+ 3)) {
            bs, j in ref.loss(xd, wd, bs, r, outputs: ref.outputs(ofChannel: j))
        }

        var worst = (dInput: 0.0, dWeight: 0.0, dBias: 0.0)
        for microkernel in Microkernel.isSupported ? [true, false] : [false] {
            let savedMicrokernel = Microkernel.isEnabled
            Microkernel.isEnabled = microkernel
            defer { Microkernel.isEnabled = savedMicrokernel }
            let y = try Convolution.forward(x, weight: wt, bias: b, geometry: g)
            FiniteDifference.checkForward("conv2d \(name) microkernel \(microkernel)", kernel: y, reference: expected,
                                          shape: ref.outputShape, file: file, line: line)
            for threads in 1 ... 3 {
                let savedThreads = Gemm.threadCount
                Gemm.setThreadCount(threads)
                defer { Gemm.setThreadCount(savedThreads) }
                let grads = try Convolution.backward(dY, input: x, weight: wt, geometry: g, needs: .all)
                let label = "conv2d \(name) [microkernel \(microkernel), \(threads) threads]"
                worst.dInput = max(worst.dInput, FiniteDifference.check("\(label) dInput", kernel: grads.dInput, shape: x.shape,
                                                                        reference: dX, file: file, line: line))
                worst.dWeight = max(worst.dWeight, FiniteDifference.check("\(label) dWeight", kernel: grads.dWeight, shape: wt.shape,
                                                                          reference: dW, file: file, line: line))
                worst.dBias = max(worst.dBias, FiniteDifference.check("\(label) dBias", kernel: grads.dBias,
                                                                      shape: [g.outputChannels], reference: dB, file: file, line: line))
                for j in unread where grads.dInput?.values[j] != 0 {
                    XCTFail("\(label): dInput[\(j)] is read by no window but is \(grads.dInput?.values[j] ?? .nan)", file: file, line: line)
                }
            }
        }
        FiniteDifference.report("conv2d \(name)\(unread.isEmpty ? "" : ", \(unread.count) probed inputs unread")",
                                ["dInput": worst.dInput, "dWeight": worst.dWeight, "dBias": worst.dBias],
                                probes: [dX.count, dW.count, dB.count])
    }

    /// Flat indices of the first and last row and column of one plane: where padding, strides
    /// that never reach the last row or column, and band edges show.
    func planeEdges(_ shape: [Int], image: Int, channel: Int) -> [Int] {
        let (c, h, w) = (shape[1], shape[2], shape[3])
        let base = (image * c + channel) * h * w
        var edges: [Int] = []
        for x in 0 ..< w { edges += [base + x, base + (h - 1) * w + x] }
        for y in 0 ..< h { edges += [base + y * w, base + y * w + w - 1] }
        return edges
    }

    func testSmallConvolutions() throws {
        typealias G = Conv2dGeometry
        // (name, N, H, W, geometry, bias)
        let cases: [(String, Int, Int, Int, G, Bool)] = [
            ("3×3 s1 p1 ragged, batch 3", 3, 5, 7, G(inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 1), true),
            ("3×3 s2 p1 groups 2, batch 1, no bias", 1, 6, 5,
             G(inputChannels: 4, outputChannels: 6, kernelSize: 3, stride: 2, padding: 1, groups: 2), false),
            ("3×3 s1 p1 depthwise", 2, 7, 6, G(inputChannels: 6, outputChannels: 6, kernelSize: 3, padding: 1, groups: 6), true),
            ("3×3 s2 p1 depthwise ×2", 2, 9, 8, G(inputChannels: 4, outputChannels: 8, kernelSize: 3, stride: 2, padding: 1, groups: 4), false),
            ("3×3 s1 p2 dilation 2", 2, 9, 8, G(inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 2, dilation: 2), true),
            ("3×3 s2 dilation 2 groups 2", 2, 11, 10,
             G(inputChannels: 4, outputChannels: 2, kernelSize: 3, stride: 2, padding: 1, dilation: 2, groups: 2), true),
            // rows 7 and column 5 are never reached: their gradient is zero
            ("3×3 s2 p0 last row and column unreached", 2, 8, 6, G(inputChannels: 2, outputChannels: 3, kernelSize: 3, stride: 2), true),
            ("3×3 s2 p1, batch 3", 3, 6, 7, G(inputChannels: 3, outputChannels: 2, kernelSize: 3, stride: 2, padding: 1), false),
            // with padding p a row is left out only when (H + 2p − k) mod stride > p: stride 3
            ("3×3 s3 p1 last row and column unreached", 2, 6, 9,
             G(inputChannels: 2, outputChannels: 3, kernelSize: 3, stride: 3, padding: 1), true),
            ("1×1 s1 pointwise", 3, 4, 6, G(inputChannels: 5, outputChannels: 7, kernelSize: 1), true),
            ("1×1 s1 pointwise groups 2", 2, 3, 5, G(inputChannels: 4, outputChannels: 6, kernelSize: 1, groups: 2), false),
            ("1×1 s2", 2, 7, 5, G(inputChannels: 6, outputChannels: 4, kernelSize: 1, stride: 2), true),
            ("1×1 s1 p1", 2, 4, 5, G(inputChannels: 3, outputChannels: 2, kernelSize: 1, padding: 1), true),
            ("3×3 s1 p2", 2, 5, 4, G(inputChannels: 3, outputChannels: 3, kernelSize: 3, padding: 2), true),
            ("3×3 s1 p3 (padding ≥ kernel: unfolded)", 2, 3, 4, G(inputChannels: 2, outputChannels: 2, kernelSize: 3, padding: 3), true),
            ("3×3 s1 p0", 3, 6, 5, G(inputChannels: 2, outputChannels: 3, kernelSize: 3), true),
            ("3×3 s1 p1 16→16 small plane", 3, 5, 4, G(inputChannels: 16, outputChannels: 16, kernelSize: 3, padding: 1), true),
            ("5×5 s1 p2", 2, 9, 11, G(inputChannels: 3, outputChannels: 5, kernelSize: 5, padding: 2), true),
            ("5×5 s2 p2", 2, 9, 8, G(inputChannels: 2, outputChannels: 3, kernelSize: 5, stride: 2, padding: 2), false),
            ("7×7 s2 p3", 2, 13, 10, G(inputChannels: 3, outputChannels: 4, kernelSize: 7, stride: 2, padding: 3), false),
            ("3×1 s(1,2) p(1,0) groups 2", 2, 6, 7,
             G(inputChannels: 4, outputChannels: 4, kernelSize: (3, 1), stride: (1, 2), padding: (1, 0), groups: 2), true),
            ("1×3 s1 p(0,1)", 2, 5, 6, G(inputChannels: 3, outputChannels: 2, kernelSize: (1, 3), padding: (0, 1)), true),
        ]
        for (i, (name, n, h, w, g, bias)) in cases.enumerated() {
            try checkConvolution(name, images: n, height: h, width: w, geometry: g, bias: bias,
                                 probes: Probes(input: 300, weight: 300), seed: 100 + UInt64(i))
        }
    }

    /// 3×3 stride 1 with 16 channels on a plane large enough that the flipped-weight `dInput`
    /// runs on the forward's band-parallel path when the microkernel is off (a plane of ≥ 1024).
    func testLargePlaneStrideOne() throws {
        let g = Conv2dGeometry(inputChannels: 16, outputChannels: 16, kernelSize: 3, padding: 1)
        let ref = ConvolutionReference(g, images: 2, height: 33, width: 34)
        try checkConvolution("3×3 s1 p1 16→16 33×34", images: 2, height: 33, width: 34, geometry: g,
                             probes: Probes(input: 150, weight: 12, bias: 2, output: 2000,
                                            inputAlways: planeEdges(ref.inputShape, image: 1, channel: 15)),
                             seed: 200)
    }

    /// Enough columns that `dWeight` and the folded `dInput` are built over more than one band of
    /// output rows (`Convolution.columnBudget / (kdim·W_out)` rows each).
    func testSeveralBands() throws {
        let g = Conv2dGeometry(inputChannels: 24, outputChannels: 2, kernelSize: 7, stride: 2, padding: 3)
        let ref = ConvolutionReference(g, images: 2, height: 60, width: 64)
        let bandRows = Convolution.columnBudget / (24 * 49 * ref.ow)
        XCTAssertLessThan(bandRows, ref.oh, "the case must span more than one band")
        // input rows around the band boundary (rows 2·bandRows − 3 … 2·bandRows + 1 are read by the
        // last output row of one band and the first of the next), and a last row
        let boundary = (2 * bandRows - 4) ... (2 * bandRows + 2)
        var always: [Int] = []
        let lastPlane = (1 * 24 + 23) * 60 * 64  // image 1, channel 23
        for iy in boundary {
            for ix in [0, 1, 31, 62, 63] { always.append(lastPlane + iy * 64 + ix) }
        }
        for ix in 0 ..< 64 { always.append(59 * 64 + ix) }  // image 0, channel 0
        try checkConvolution("7×7 s2 p3 24→2 60×64 (\((ref.oh + bandRows - 1) / bandRows) bands)", images: 2, height: 60, width: 64,
                             geometry: g, probes: Probes(input: 40, weight: 4, bias: 1, output: 2000, inputAlways: always), seed: 300)
    }

    /// 128 channels, 2048 output pixels: the flipped-weight `dInput` runs on Winograd F(4×4, 3×3),
    /// its weight transformed straight from the layer's (`trainingTransform(flipping:)`).
    func testWinogradInputGradient() throws {
        let g = Conv2dGeometry(inputChannels: 128, outputChannels: 128, kernelSize: 3, padding: 1)
        XCTAssertTrue(Winograd4x4.paysForTrainingTransform(g, images: 2, height: 32, width: 32), "the case must reach the Winograd path")
        try checkConvolution("3×3 s1 p1 128→128 2×32×32 (Winograd dInput)", images: 2, height: 32, width: 32, geometry: g,
                             probes: Probes(input: 6, weight: 30, bias: 2, output: 1000, inputAlways: []), seed: 400)
    }

    /// A subset of the gradients equals the same gradients computed with all three, and the
    /// others are left nil: on the flipped-weight, unfolded and pointwise paths.
    func testGradientNeedsSubsets() throws {
        for (i, (n, h, w, g)) in [
            (2, 6, 5, Conv2dGeometry(inputChannels: 4, outputChannels: 6, kernelSize: 3, padding: 1, groups: 2)),
            (3, 7, 6, Conv2dGeometry(inputChannels: 3, outputChannels: 4, kernelSize: 3, stride: 2, padding: 1)),
            (2, 4, 5, Conv2dGeometry(inputChannels: 5, outputChannels: 3, kernelSize: 1)),
        ].enumerated() {
            var rng = SplitMix64(seed: 500 + UInt64(i))
            let ref = ConvolutionReference(g, images: n, height: h, width: w)
            let x = try rng.tensor(ref.inputShape, scale: 1)
            let wt = try rng.tensor(g.convolutionWeightShape, scale: 0.5)
            let dY = try rng.tensor(ref.outputShape, scale: 1)
            let all = try Convolution.backward(dY, input: x, weight: wt, geometry: g, needs: .all)
            for needs in [GradientNeeds(input: true, weight: false, bias: false), GradientNeeds(input: false, weight: true, bias: false),
                          GradientNeeds(input: false, weight: false, bias: true), GradientNeeds(input: true, weight: false, bias: true),
                          GradientNeeds(input: false, weight: true, bias: true)] {
                let some = try Convolution.backward(dY, input: x, weight: wt, geometry: g, needs: needs)
                XCTAssertEqual(some.dInput, needs.input ? all.dInput : nil, "case \(i) \(needs): dInput")
                XCTAssertEqual(some.dWeight, needs.weight ? all.dWeight : nil, "case \(i) \(needs): dWeight")
                XCTAssertEqual(some.dBias, needs.bias ? all.dBias : nil, "case \(i) \(needs): dBias")
            }
        }
    }

    func testTransposedConvolutions() throws {
        typealias G = Conv2dGeometry
        let cases: [(String, Int, Int, Int, G, Bool)] = [
            ("3×3 s2 p1 op1 groups 2", 2, 3, 4,
             G(inputChannels: 4, outputChannels: 6, kernelSize: 3, stride: 2, padding: 1, groups: 2, outputPadding: 1), true),
            ("4×4 s2 p1 (DCGAN), batch 3", 3, 2, 3, G(inputChannels: 3, outputChannels: 2, kernelSize: 4, stride: 2, padding: 1), false),
            ("3×3 s1 dilation 2 op1 depthwise", 2, 3, 5,
             G(inputChannels: 4, outputChannels: 4, kernelSize: 3, dilation: 2, groups: 4, outputPadding: 1), true),
            ("2×3 s(2,1) p(0,1), batch 1", 1, 3, 4,
             G(inputChannels: 5, outputChannels: 3, kernelSize: (2, 3), stride: (2, 1), padding: (0, 1)), true),
            ("1×1 s1", 2, 3, 3, G(inputChannels: 3, outputChannels: 4, kernelSize: 1), false),
            ("3×3 s3 p2 (outputs past the scatter)", 2, 3, 2, G(inputChannels: 2, outputChannels: 2, kernelSize: 3, stride: 3, padding: 2), true),
        ]
        for (i, (name, n, h, w, g, bias)) in cases.enumerated() {
            let ref = TransposedConvolutionReference(g, images: n, height: h, width: w)
            var rng = SplitMix64(seed: 600 + UInt64(i))
            let x = try rng.tensor(ref.inputShape, scale: 1)
            let wt = try rng.tensor(g.transposedWeightShape, scale: 0.5)
            let b = bias ? try rng.tensor([g.outputChannels], scale: 0.5) : nil
            let r = rng.doubles(ref.outputShape.reduce(1, *))
            let dY = try DenseTensor(shape: ref.outputShape, values: r.map(Float.init))
            let (xd, wd, bd) = (x.doubles, wt.doubles, b?.doubles ?? [Double](repeating: 0, count: g.outputChannels))

            let y = try TransposedConvolution.forward(x, weight: wt, bias: b, geometry: g)
            FiniteDifference.checkForward("conv_transpose2d \(name)", kernel: y, reference: ref.forward(xd, wd, bias ? bd : nil),
                                          shape: ref.outputShape)
            let dX = FiniteDifference.gradient(of: xd, at: Array(xd.indices)) { xs, _ in weightedSum(ref.forward(xs, wd, bd), r) }
            let dW = FiniteDifference.gradient(of: wd, at: Array(wd.indices)) { ws, _ in weightedSum(ref.forward(xd, ws, bd), r) }
            let dB = FiniteDifference.gradient(of: bd, at: Array(bd.indices)) { bs, _ in weightedSum(ref.forward(xd, wd, bs), r) }
            // dWeight on the microkernel (the weight gradient of the convolution dX is) and on OpenBLAS
            for microkernel in Microkernel.isSupported ? [true, false] : [false] {
                let savedMicrokernel = Microkernel.isEnabled
                Microkernel.isEnabled = microkernel
                defer { Microkernel.isEnabled = savedMicrokernel }
                let label = "conv_transpose2d \(name) [microkernel \(microkernel)]"
                let grads = try TransposedConvolution.backward(dY, input: x, weight: wt, geometry: g, needs: .all)
                let errors = [
                    "dInput": FiniteDifference.check("\(label) dInput", kernel: grads.dInput, shape: x.shape, reference: dX),
                    "dWeight": FiniteDifference.check("\(label) dWeight", kernel: grads.dWeight, shape: wt.shape, reference: dW),
                    "dBias": FiniteDifference.check("\(label) dBias", kernel: grads.dBias, shape: [g.outputChannels], reference: dB),
                ]
                FiniteDifference.report(label, errors, probes: [dX.count, dW.count, dB.count])
                let inputOnly = try TransposedConvolution.backward(dY, input: x, weight: wt, geometry: g,
                                                                   needs: GradientNeeds(input: true, weight: false, bias: false))
                let weightOnly = try TransposedConvolution.backward(dY, input: x, weight: wt, geometry: g,
                                                                    needs: GradientNeeds(input: false, weight: true, bias: false))
                XCTAssertEqual(inputOnly.dInput, grads.dInput, name)
                XCTAssertNil(inputOnly.dWeight, name)
                XCTAssertEqual(weightOnly.dWeight, grads.dWeight, name)
                XCTAssertNil(weightOnly.dInput, name)
            }
        }
    }
}
