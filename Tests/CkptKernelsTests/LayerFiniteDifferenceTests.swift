import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// The backward kernels of batch norm, pooling, linear and the element-wise operations against
/// central differences (in Double) of naive Double forwards, with `dOutput = r` for `L = Σ r·y`.
final class LayerFiniteDifferenceTests: XCTestCase {
    /// A `[C]` tensor from Doubles that are Float values already.
    func vector(_ v: [Double]) throws -> DenseTensor { try DenseTensor(shape: [v.count], values: v.map(Float.init)) }

    /// `count` values `1 ± 0.5` (γ), or `± 0.5` (β), as Floats widened to Double.
    func parameters(_ count: Int, around center: Double, rng: inout SplitMix64) -> [Double] {
        (0 ..< count).map { _ in center + 0.5 * Double(rng.nextSigned()) }
    }

    /// An input whose channels have different means (`0.5·c`), so the batch statistics matter.
    func offsetInput(_ shape: [Int], rng: inout SplitMix64) throws -> DenseTensor {
        let plane = shape.dropFirst(2).reduce(1, *), c = shape[1]
        let values = (0 ..< shape.reduce(1, *)).map { i in rng.nextSigned() + 0.5 * Float((i / plane) % c) }
        return try DenseTensor(shape: shape, values: values)
    }

    // MARK: batch norm

    /// A ReLU's output handed to the batch norm's backward masks `dy` exactly as `reluBackward`
    /// would (NaN outputs pass `dy`, zeros and negatives block it): the gradients equal ReLU's
    /// backward followed by the batch norm's, with batch and with running statistics, on planes of
    /// 8k and 8k + 3 elements (vector lanes and the tail).
    func testBatchNormBackwardMaskedByReLU() throws {
        for (i, shape) in [[2, 3, 4, 4], [3, 2, 11, 1], [4, 5]].enumerated() {
            var rng = SplitMix64(seed: 760 + UInt64(i))
            let x = try offsetInput(shape, rng: &rng)
            let gamma = try vector(parameters(shape[1], around: 1, rng: &rng))
            let beta = try vector(parameters(shape[1], around: 0, rng: &rng))
            let dY = try rng.tensor(shape, scale: 1)
            let (y, batch) = try BatchNormalization.trainingForward(x, weight: gamma, bias: beta, epsilon: 1e-5)
            var reluOutput = Elementwise.relu(y)
            reluOutput.values[1] = .nan
            reluOutput.values[2] = 0
            let masked = try Elementwise.reluBackward(dY, output: reluOutput)
            for batchStatistics in [true, false] {
                let expected = try BatchNormalization.backward(masked, input: x, mean: batch.mean,
                                                               inverseStandardDeviation: batch.inverseStandardDeviation,
                                                               weight: gamma, batchStatistics: batchStatistics, needs: .all)
                let fused = try BatchNormalization.backward(dY, input: x, mean: batch.mean,
                                                            inverseStandardDeviation: batch.inverseStandardDeviation,
                                                            weight: gamma, batchStatistics: batchStatistics, needs: .all,
                                                            reluOutput: reluOutput)
                XCTAssertEqual(fused.dInput, expected.dInput, "\(shape) batch statistics \(batchStatistics): dInput")
                XCTAssertEqual(fused.dWeight, expected.dWeight, "\(shape): dγ")
                XCTAssertEqual(fused.dBias, expected.dBias, "\(shape): dβ")
            }
        }
    }

    /// Training mode: `dInput`, `dγ` and `dβ` through the batch statistics.
    func testBatchNormTraining() throws {
        let epsilon: Float = 1e-5
        for (i, shape) in [[3, 4, 5, 3], [2, 3, 4, 7], [1, 3, 4, 6], [5, 3], [4, 2, 1, 1]].enumerated() {
            var rng = SplitMix64(seed: 700 + UInt64(i))
            let x = try offsetInput(shape, rng: &rng)
            let gamma = parameters(shape[1], around: 1, rng: &rng), beta = parameters(shape[1], around: 0, rng: &rng)
            let r = rng.doubles(x.count)
            let dY = try DenseTensor(shape: shape, values: r.map(Float.init))
            let xd = x.doubles
            let eps = Double(epsilon)

            let (y, batch) = try BatchNormalization.trainingForward(x, weight: try vector(gamma), bias: try vector(beta), epsilon: epsilon)
            FiniteDifference.checkForward("batch norm \(shape)", kernel: y,
                                          reference: referenceBatchNorm(xd, shape: shape, gamma: gamma, beta: beta, epsilon: eps),
                                          shape: shape)
            let grads = try BatchNormalization.backward(dY, input: x, mean: batch.mean, inverseStandardDeviation: batch.inverseStandardDeviation,
                                                        weight: try vector(gamma), batchStatistics: true, needs: .all)
            let dX = FiniteDifference.gradient(of: xd, at: Array(xd.indices)) { xs, _ in
                weightedSum(referenceBatchNorm(xs, shape: shape, gamma: gamma, beta: beta, epsilon: eps), r)
            }
            let dGamma = FiniteDifference.gradient(of: gamma, at: Array(gamma.indices)) { gs, _ in
                weightedSum(referenceBatchNorm(xd, shape: shape, gamma: gs, beta: beta, epsilon: eps), r)
            }
            let dBeta = FiniteDifference.gradient(of: beta, at: Array(beta.indices)) { bs, _ in
                weightedSum(referenceBatchNorm(xd, shape: shape, gamma: gamma, beta: bs, epsilon: eps), r)
            }
            FiniteDifference.report("batch norm (training) \(shape)", [
                "dInput": FiniteDifference.check("batch norm \(shape) dInput", kernel: grads.dInput, shape: shape, reference: dX),
                "dγ": FiniteDifference.check("batch norm \(shape) dγ", kernel: grads.dWeight, shape: [shape[1]], reference: dGamma),
                "dβ": FiniteDifference.check("batch norm \(shape) dβ", kernel: grads.dBias, shape: [shape[1]], reference: dBeta),
            ], probes: [dX.count, dGamma.count, dBeta.count])

            // a subset of the gradients equals the same gradients computed with all three
            let inputOnly = try BatchNormalization.backward(dY, input: x, mean: batch.mean,
                                                            inverseStandardDeviation: batch.inverseStandardDeviation, weight: try vector(gamma),
                                                            batchStatistics: true, needs: GradientNeeds(input: true, weight: false, bias: false))
            let parametersOnly = try BatchNormalization.backward(dY, input: x, mean: batch.mean,
                                                                 inverseStandardDeviation: batch.inverseStandardDeviation, weight: try vector(gamma),
                                                                 batchStatistics: true, needs: GradientNeeds(input: false, weight: true, bias: true))
            XCTAssertEqual(inputOnly.dInput, grads.dInput, "\(shape)")
            XCTAssertNil(inputOnly.dWeight, "\(shape)")
            XCTAssertNil(parametersOnly.dInput, "\(shape)")
            XCTAssertEqual(parametersOnly.dWeight, grads.dWeight, "\(shape)")
            XCTAssertEqual(parametersOnly.dBias, grads.dBias, "\(shape)")
        }
    }

    /// Eval mode: the running statistics are constants, so `dInput = γ·invstd·dy`.
    func testBatchNormEval() throws {
        let epsilon: Float = 1e-5
        for (i, shape) in [[3, 4, 5, 3], [1, 2, 3, 1], [4, 3]].enumerated() {
            var rng = SplitMix64(seed: 750 + UInt64(i))
            let c = shape[1]
            let x = try offsetInput(shape, rng: &rng)
            let gamma = parameters(c, around: 1, rng: &rng), beta = parameters(c, around: 0, rng: &rng)
            let mean = parameters(c, around: 0.5, rng: &rng), variance = parameters(c, around: 1, rng: &rng)
            let r = rng.doubles(x.count)
            let dY = try DenseTensor(shape: shape, values: r.map(Float.init))
            let xd = x.doubles
            let eps = Double(epsilon)
            func reference(_ xs: [Double], _ gs: [Double], _ bs: [Double]) -> [Double] {
                referenceBatchNorm(xs, shape: shape, gamma: gs, beta: bs, epsilon: eps, running: (mean, variance))
            }

            let y = try BatchNormalization.forward(x, weight: try vector(gamma), bias: try vector(beta), runningMean: try vector(mean),
                                                   runningVariance: try vector(variance), epsilon: epsilon)
            FiniteDifference.checkForward("batch norm eval \(shape)", kernel: y, reference: reference(xd, gamma, beta), shape: shape)
            let (normalized, invstd) = try BatchNormalization.evalNormalized(x, runningMean: try vector(mean),
                                                                             runningVariance: try vector(variance), epsilon: epsilon)
            let grads = try BatchNormalization.backward(dY, normalized: normalized, inverseStandardDeviation: invstd, weight: try vector(gamma),
                                                        batchStatistics: false, needs: .all)
            let dX = FiniteDifference.gradient(of: xd, at: Array(xd.indices)) { xs, _ in weightedSum(reference(xs, gamma, beta), r) }
            let dGamma = FiniteDifference.gradient(of: gamma, at: Array(gamma.indices)) { gs, _ in weightedSum(reference(xd, gs, beta), r) }
            let dBeta = FiniteDifference.gradient(of: beta, at: Array(beta.indices)) { bs, _ in weightedSum(reference(xd, gamma, bs), r) }
            FiniteDifference.report("batch norm (eval) \(shape)", [
                "dInput": FiniteDifference.check("batch norm eval \(shape) dInput", kernel: grads.dInput, shape: shape, reference: dX),
                "dγ": FiniteDifference.check("batch norm eval \(shape) dγ", kernel: grads.dWeight, shape: [c], reference: dGamma),
                "dβ": FiniteDifference.check("batch norm eval \(shape) dβ", kernel: grads.dBias, shape: [c], reference: dBeta),
            ], probes: [dX.count, dGamma.count, dBeta.count])
        }
    }

    /// `running = 0.9·running + 0.1·batch` with the unbiased batch variance (`Σ(x − mean)²/(M − 1)`),
    /// as `torch.nn.BatchNorm2d(momentum=0.1)` updates its buffers.
    func testRunningStatisticsUpdate() throws {
        var rng = SplitMix64(seed: 780)
        let shape = [3, 4, 5, 3]
        let (n, c, plane) = (3, 4, 15)
        let m = Double(n * plane)
        let x = try offsetInput(shape, rng: &rng)
        let runningMean = parameters(c, around: 0, rng: &rng), runningVariance = parameters(c, around: 1, rng: &rng)
        let (_, batch) = try BatchNormalization.trainingForward(x, weight: DenseTensor(shape: [c], repeating: 1),
                                                                bias: DenseTensor(shape: [c], repeating: 0), epsilon: 1e-5)
        var meanT = try vector(runningMean), varianceT = try vector(runningVariance)
        BatchNormalization.updateRunningStatistics(mean: &meanT, variance: &varianceT, batch: batch, momentum: 0.1)
        for ch in 0 ..< c {
            var values: [Double] = []
            for img in 0 ..< n { values += x.doubles[((img * c + ch) * plane) ..< ((img * c + ch + 1) * plane)] }
            let mu = values.reduce(0, +) / m
            let unbiased = values.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / (m - 1)
            let expectedMean = 0.9 * runningMean[ch] + 0.1 * mu
            let expectedVariance = 0.9 * runningVariance[ch] + 0.1 * unbiased
            XCTAssertEqual(Double(batch.unbiasedVariance[ch]), unbiased, accuracy: 1e-6 * max(1, unbiased), "channel \(ch) unbiased variance")
            XCTAssertEqual(Double(meanT.values[ch]), expectedMean, accuracy: 1e-6 * max(1, abs(expectedMean)), "channel \(ch) running mean")
            XCTAssertEqual(Double(varianceT.values[ch]), expectedVariance, accuracy: 1e-6 * max(1, expectedVariance),
                           "channel \(ch) running variance")
        }
    }

    /// One value per channel has no variance to normalise by: torch raises, so must the kernel.
    func testBatchNormSingleValuePerChannelThrows() throws {
        for shape in [[1, 3], [1, 3, 1, 1]] {
            let x = DenseTensor(shape: shape, repeating: 0.5)
            XCTAssertThrowsError(try BatchNormalization.trainingForward(x, weight: DenseTensor(shape: [3], repeating: 1),
                                                                        bias: DenseTensor(shape: [3], repeating: 0), epsilon: 1e-5)) { error in
                guard case let .invalidArgument(operation, message)? = error as? KernelError else {
                    return XCTFail("\(shape): expected KernelError.invalidArgument, got \(error)")
                }
                XCTAssertEqual(operation, "batch_norm")
                XCTAssertTrue(message.contains("expected more than 1 value per channel when training"), message)
            }
        }
    }

    // MARK: pooling

    /// An input of distinct values at least 0.01 apart (shuffled), so no window is within the
    /// finite-difference step of a tie.
    func distinctInput(_ shape: [Int], rng: inout SplitMix64) throws -> DenseTensor {
        let count = shape.reduce(1, *)
        var values = (0 ..< count).map { Float($0 - count / 2) * 0.01 }
        for i in stride(from: count - 1, to: 0, by: -1) { values.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return try DenseTensor(shape: shape, values: values)
    }

    func testMaxPooling() throws {
        typealias P = PoolGeometry
        let cases: [(String, [Int], P)] = [
            ("3×3 s2 p1 ragged", [2, 3, 9, 8], P(kernelSize: 3, stride: 2, padding: 1)),
            ("3×3 s2 p1 wide (vector path)", [2, 2, 7, 33], P(kernelSize: 3, stride: 2, padding: 1)),
            ("2×2 s2", [3, 2, 6, 8], P(kernelSize: 2)),
            ("2×2 s2 odd sizes", [2, 2, 7, 9], P(kernelSize: 2)),
            ("2×2 s2 wide (vector path)", [1, 2, 4, 37], P(kernelSize: 2)),
            ("3×3 s2 ceil", [2, 2, 8, 6], P(kernelSize: 3, stride: 2, ceilMode: true)),
            ("2×2 s2 ceil odd sizes", [2, 2, 7, 9], P(kernelSize: 2, ceilMode: true)),
            ("3×3 s2 p1 ceil", [2, 2, 6, 7], P(kernelSize: 3, stride: 2, padding: 1, ceilMode: true)),
            ("3×3 s1 p1", [2, 2, 5, 6], P(kernelSize: 3, stride: 1, padding: 1)),
            ("3×3 s2 p1 dilation 2", [2, 2, 9, 10], P(kernelSize: 3, stride: 2, padding: 1, dilation: 2)),
            ("2×2 s1, batch 1", [1, 3, 4, 5], P(kernelSize: 2, stride: 1)),
        ]
        for (i, (name, shape, g)) in cases.enumerated() {
            var rng = SplitMix64(seed: 800 + UInt64(i))
            let x = try distinctInput(shape, rng: &rng)
            let ref = PoolReference(g)
            let xd = x.doubles
            let expected = ref.maximum(xd, shape: shape)
            let r = rng.doubles(expected.values.count)
            let dY = try DenseTensor(shape: expected.shape, values: r.map(Float.init))

            let (y, indices) = try Pooling.maxForwardWithIndices(x, geometry: g)
            FiniteDifference.checkForward("max pool \(name) (with indices)", kernel: y, reference: expected.values, shape: expected.shape)
            FiniteDifference.checkForward("max pool \(name)", kernel: try Pooling.maxForward(x, geometry: g), reference: expected.values,
                                          shape: expected.shape)
            let plane = shape[2] * shape[3]
            XCTAssertEqual(indices.map(Int.init), expected.winners.map { $0 % plane }, "max pool \(name): indices")
            let dX = FiniteDifference.gradient(of: xd, at: FiniteDifference.sample(count: xd.count, limit: 300, seed: 850 + UInt64(i))) {
                xs, _ in weightedSum(ref.maximum(xs, shape: shape).values, r)
            }
            let dInput = try Pooling.maxBackward(dY, indices: indices, inputShape: shape)
            FiniteDifference.report("max pool \(name)", [
                "dInput": FiniteDifference.check("max pool \(name) dInput", kernel: dInput, shape: shape, reference: dX),
            ], probes: [dX.count])
        }
    }

    /// Ties go to the first largest element in scan order, a NaN beats everything and a later NaN
    /// beats an earlier one (ATen's `val > maxval || isnan(val)`), a window of −inf routes to its
    /// first tap: the indices equal the reference's, and `dInput` collects each `dy` there.
    /// A plane 40 wide takes the stride-2 forward's eight-window vector path.
    func testMaxPoolingTiesNaNAndInfinity() throws {
        for shape in [[2, 2, 7, 8], [1, 2, 5, 40]] { try checkMaxPoolingTiesNaNAndInfinity(shape: shape) }
    }

    func checkMaxPoolingTiesNaNAndInfinity(shape: [Int]) throws {
        let count = shape.reduce(1, *)
        var rng = SplitMix64(seed: 870)
        // few distinct values: most windows hold a tie for the maximum
        var ties = (0 ..< count).map { _ in Float(rng.next() % 3) }
        for i in 0 ..< 8 { ties[i] = 5 }  // a run of equal maxima along the first row
        var nans = (0 ..< count).map { _ in rng.nextSigned() }
        for i in [0, 9, 10, 17, 40, 41, 48, 100, 131, 200] { nans[i] = .nan }  // windows with one and with two NaNs
        var infinities = [Float](repeating: -.infinity, count: count)
        for i in stride(from: 3, to: count, by: 7) { infinities[i] = rng.nextSigned() }
        let constant = [Float](repeating: 0.25, count: count)
        for (inputName, values) in [("ties", ties), ("NaN", nans), ("−inf", infinities), ("constant", constant)] {
            for g in [PoolGeometry(kernelSize: 3, stride: 2, padding: 1), PoolGeometry(kernelSize: 2), PoolGeometry(kernelSize: 3, stride: 1),
                      PoolGeometry(kernelSize: 3, stride: 2, ceilMode: true), PoolGeometry(kernelSize: 2, stride: 2, dilation: 2)] {
                let what = "max pool \(shape) \(inputName) k\(g.kernelSize) s\(g.stride) p\(g.padding) d\(g.dilation) ceil \(g.ceilMode)"
                let x = try DenseTensor(shape: shape, values: values)
                let expected = PoolReference(g).maximum(x.doubles, shape: shape)
                let (y, indices) = try Pooling.maxForwardWithIndices(x, geometry: g)
                FiniteDifference.checkForward(what, kernel: y, reference: expected.values, shape: expected.shape)
                FiniteDifference.checkForward("\(what) (no indices)", kernel: try Pooling.maxForward(x, geometry: g),
                                              reference: expected.values, shape: expected.shape)
                let plane = shape[2] * shape[3]
                XCTAssertEqual(indices.map(Int.init), expected.winners.map { $0 % plane }, "\(what): indices")
                var rRng = SplitMix64(seed: 871)
                let r = rRng.doubles(expected.values.count)
                var routed = [Double](repeating: 0, count: count)
                for (o, winner) in expected.winners.enumerated() { routed[winner] += r[o] }
                let dInput = try Pooling.maxBackward(try DenseTensor(shape: expected.shape, values: r.map(Float.init)), indices: indices,
                                                     inputShape: shape)
                for (j, e) in routed.enumerated() {
                    XCTAssertEqual(Double(dInput.values[j]), e, accuracy: 1e-6, "\(what): dInput[\(j)]")
                }
            }
        }
    }

    func testAveragePooling() throws {
        typealias P = PoolGeometry
        let cases: [(String, [Int], P, Bool)] = [
            ("3×3 s2 p1", [2, 3, 7, 8], P(kernelSize: 3, stride: 2, padding: 1), true),
            ("3×3 s2 p1 count_include_pad false", [2, 3, 7, 8], P(kernelSize: 3, stride: 2, padding: 1), false),
            ("2×2 s2 last row and column unreached", [3, 2, 5, 7], P(kernelSize: 2), true),
            ("3×3 s2 p1 ceil", [2, 2, 6, 5], P(kernelSize: 3, stride: 2, padding: 1, ceilMode: true), true),
            ("3×3 s2 p1 ceil count_include_pad false", [2, 2, 6, 5], P(kernelSize: 3, stride: 2, padding: 1, ceilMode: true), false),
            ("2×2 s2 ceil", [2, 2, 5, 7], P(kernelSize: 2, ceilMode: true), true),
            ("3×3 s1 p1 count_include_pad false, batch 1", [1, 2, 5, 6], P(kernelSize: 3, stride: 1, padding: 1), false),
            ("4×4 s3 p2 ceil (window past the padding)", [2, 1, 8, 8], P(kernelSize: 4, stride: 3, padding: 2, ceilMode: true), true),
            ("4×4 s3 p2 ceil count_include_pad false", [2, 1, 8, 8], P(kernelSize: 4, stride: 3, padding: 2, ceilMode: true), false),
        ]
        for (i, (name, shape, g, includePad)) in cases.enumerated() {
            var rng = SplitMix64(seed: 900 + UInt64(i))
            let x = try rng.tensor(shape, scale: 1)
            let ref = PoolReference(g)
            let xd = x.doubles
            let expected = ref.average(xd, shape: shape, countIncludePad: includePad)
            let r = rng.doubles(expected.values.count)
            let dY = try DenseTensor(shape: expected.shape, values: r.map(Float.init))

            FiniteDifference.checkForward("avg pool \(name)", kernel: try Pooling.averageForward(x, geometry: g, countIncludePad: includePad),
                                          reference: expected.values, shape: expected.shape)
            let dX = FiniteDifference.gradient(of: xd, at: Array(xd.indices)) { xs, _ in
                weightedSum(ref.average(xs, shape: shape, countIncludePad: includePad).values, r)
            }
            let dInput = try Pooling.averageBackward(dY, inputShape: shape, geometry: g, countIncludePad: includePad)
            FiniteDifference.report("avg pool \(name)", [
                "dInput": FiniteDifference.check("avg pool \(name) dInput", kernel: dInput, shape: shape, reference: dX),
            ], probes: [dX.count])
        }
    }

    func testAdaptiveAveragePooling() throws {
        let cases: [([Int], Int, Int)] = [
            ([2, 3, 5, 7], 3, 2),  // windows that overlap and differ in size
            ([2, 2, 1, 1], 7, 7),  // VGG's avgpool on a 32×32 input: every window is the one pixel
            ([1, 3, 2, 3], 7, 7),  // more outputs than inputs: windows repeat pixels
            ([3, 2, 13, 13], 6, 6),  // AlexNet
            ([2, 2, 7, 7], 7, 7),  // the identity
            ([2, 2, 4, 6], 1, 1),  // global average
            ([1, 2, 6, 4], 4, 3),
        ]
        for (i, (shape, oh, ow)) in cases.enumerated() {
            var rng = SplitMix64(seed: 950 + UInt64(i))
            let x = try rng.tensor(shape, scale: 1)
            let xd = x.doubles
            let outShape = [shape[0], shape[1], oh, ow]
            let r = rng.doubles(outShape.reduce(1, *))
            let dY = try DenseTensor(shape: outShape, values: r.map(Float.init))
            let what = "adaptive avg pool \(shape[2])×\(shape[3]) → \(oh)×\(ow)"

            FiniteDifference.checkForward(what, kernel: try Pooling.adaptiveAverageForward(x, outputHeight: oh, outputWidth: ow),
                                          reference: referenceAdaptiveAverage(xd, shape: shape, outputHeight: oh, outputWidth: ow),
                                          shape: outShape)
            let dX = FiniteDifference.gradient(of: xd, at: Array(xd.indices)) { xs, _ in
                weightedSum(referenceAdaptiveAverage(xs, shape: shape, outputHeight: oh, outputWidth: ow), r)
            }
            let dInput = try Pooling.adaptiveAverageBackward(dY, inputShape: shape)
            FiniteDifference.report(what, ["dInput": FiniteDifference.check("\(what) dInput", kernel: dInput, shape: shape, reference: dX)],
                                    probes: [dX.count])
        }
    }

    // MARK: linear and element-wise

    func testLinear() throws {
        // (N, in, out, bias, probes per operand): the last two take OpenBLAS's matrix-vector path
        // (one row) and the GEMMs split over the cores (m·n·k ≥ 2²¹)
        let cases: [(Int, Int, Int, Bool, Int)] = [
            (3, 7, 5, true, 1000), (1, 6, 4, false, 1000), (2, 33, 17, true, 1000), (1, 600, 500, true, 40), (4, 512, 1024, false, 12),
        ]
        for (i, (n, inF, outF, bias, probes)) in cases.enumerated() {
            var rng = SplitMix64(seed: 1000 + UInt64(i))
            let x = try rng.tensor([n, inF], scale: 1)
            let wt = try rng.tensor([outF, inF], scale: 1 / Float(inF).squareRoot())
            let b = bias ? try rng.tensor([outF], scale: 0.5) : nil
            let r = rng.doubles(n * outF)
            let dY = try DenseTensor(shape: [n, outF], values: r.map(Float.init))
            let (xd, wd, bd) = (x.doubles, wt.doubles, b?.doubles ?? [Double](repeating: 0, count: outF))
            let what = "linear \(n)×\(inF) → \(outF)\(bias ? "" : " no bias")"
            // `Σ r·y` over the outputs of row `row` (all that read x[row, ·]) or of column `column` (all that read W[column, ·] and b[column])
            func loss(_ xs: [Double], _ ws: [Double], _ bs: [Double], row: Int? = nil, column: Int? = nil) -> Double {
                let rows = row.map { $0 ... $0 } ?? 0 ... n - 1, columns = column.map { $0 ... $0 } ?? 0 ... outF - 1
                var s = 0.0
                for i in rows {
                    for o in columns {
                        s += r[i * outF + o] * referenceLinear(xs, ws, bs, inFeatures: inF, outFeatures: outF, i * outF + o)
                    }
                }
                return s
            }

            let outputs = FiniteDifference.sample(count: n * outF, limit: 500, seed: 1050 + UInt64(i))
            let expected = Dictionary(uniqueKeysWithValues: outputs.map {
                ($0, referenceLinear(xd, wd, bias ? bd : nil, inFeatures: inF, outFeatures: outF, $0))
            })
            FiniteDifference.checkForward(what, kernel: try FullyConnected.forward(x, weight: wt, bias: b), reference: expected, shape: [n, outF])
            let dX = FiniteDifference.gradient(of: xd, at: FiniteDifference.sample(count: xd.count, limit: probes, seed: 1060 + UInt64(i))) {
                xs, j in loss(xs, wd, bd, row: j / inF)
            }
            let dW = FiniteDifference.gradient(of: wd, at: FiniteDifference.sample(count: wd.count, limit: probes, seed: 1070 + UInt64(i))) {
                ws, j in loss(xd, ws, bd, column: j / inF)
            }
            let dB = FiniteDifference.gradient(of: bd, at: FiniteDifference.sample(count: bd.count, limit: probes, seed: 1080 + UInt64(i))) {
                bs, j in loss(xd, wd, bs, column: j)
            }
            let grads = try FullyConnected.backward(dY, input: x, weight: wt, needs: .all)
            FiniteDifference.report(what, [
                "dInput": FiniteDifference.check("\(what) dInput", kernel: grads.dInput, shape: [n, inF], reference: dX),
                "dWeight": FiniteDifference.check("\(what) dWeight", kernel: grads.dWeight, shape: [outF, inF], reference: dW),
                "dBias": FiniteDifference.check("\(what) dBias", kernel: grads.dBias, shape: [outF], reference: dB),
            ], probes: [dX.count, dW.count, dB.count])
            let inputOnly = try FullyConnected.backward(dY, input: x, weight: wt, needs: GradientNeeds(input: true, weight: false, bias: false))
            XCTAssertEqual(inputOnly.dInput, grads.dInput, what)
            XCTAssertNil(inputOnly.dWeight, what)
            XCTAssertNil(inputOnly.dBias, what)
        }
    }

    func testReLU() throws {
        let shape = [2, 3, 4, 5]
        var rng = SplitMix64(seed: 1100)
        // away from the kink by far more than the step
        let values = (0 ..< shape.reduce(1, *)).map { _ in
            let v = rng.nextSigned()
            return v < 0 ? min(v, -0.05) : max(v, 0.05)
        }
        let x = try DenseTensor(shape: shape, values: values)
        let r = rng.doubles(x.count)
        let dY = try DenseTensor(shape: shape, values: r.map(Float.init))
        let y = Elementwise.relu(x)
        FiniteDifference.checkForward("relu", kernel: y, reference: x.doubles.map { max(0, $0) }, shape: shape)
        let dX = FiniteDifference.gradient(of: x.doubles, at: Array(x.values.indices)) { xs, _ in weightedSum(xs.map { max(0, $0) }, r) }
        FiniteDifference.report("relu", [
            "dInput": FiniteDifference.check("relu dInput", kernel: try Elementwise.reluBackward(dY, output: y), shape: shape, reference: dX),
        ], probes: [dX.count])

        // at the kink torch's threshold_backward (`y <= 0 ? 0 : dy`) gives 0, and a NaN output passes dy on
        let edge = try DenseTensor(shape: [4], values: [0, -0.0, .nan, 2])
        let dEdge = try Elementwise.reluBackward(try DenseTensor(shape: [4], values: [3, 4, 5, 6]), output: Elementwise.relu(edge))
        XCTAssertEqual(dEdge.values, [0, 0, 5, 6])
    }

    /// Dropout's mask multiply is its own backward.
    func testDropoutMask() throws {
        let shape = [3, 4, 5]
        var rng = SplitMix64(seed: 1200)
        let x = try rng.tensor(shape, scale: 1)
        let mask = (0 ..< x.count).map { _ in rng.next() % 10 < 3 ? Float(0) : 1 / (1 - Float(0.3)) }
        let r = rng.doubles(x.count)
        let dY = try DenseTensor(shape: shape, values: r.map(Float.init))
        func reference(_ xs: [Double]) -> [Double] { zip(xs, mask).map { $0 * Double($1) } }
        FiniteDifference.checkForward("dropout", kernel: try Elementwise.multiply(x, mask: mask), reference: reference(x.doubles), shape: shape)
        let dX = FiniteDifference.gradient(of: x.doubles, at: Array(x.values.indices)) { xs, _ in weightedSum(reference(xs), r) }
        FiniteDifference.report("dropout", [
            "dInput": FiniteDifference.check("dropout dInput", kernel: try Elementwise.multiply(dY, mask: mask), shape: shape, reference: dX),
        ], probes: [dX.count])
    }

    /// `splitChannels` is the backward of `concatenateChannels`: ragged channel counts, batch 3.
    func testConcatenateChannels() throws {
        let counts = [2, 3, 1]
        var rng = SplitMix64(seed: 1300)
        let parts = try counts.map { try rng.tensor([3, $0, 3, 5], scale: 1) }
        let inner = 15, total = counts.reduce(0, +)
        // y[img, offset_k + c, ·] = part_k[img, c, ·]
        func reference(_ ps: [[Double]]) -> [Double] {
            var y: [Double] = []
            for img in 0 ..< 3 {
                for (k, p) in ps.enumerated() { y += p[(img * counts[k] * inner) ..< ((img + 1) * counts[k] * inner)] }
            }
            return y
        }
        let pd = parts.map(\.doubles)
        let r = rng.doubles(3 * total * inner)
        FiniteDifference.checkForward("cat", kernel: try Elementwise.concatenateChannels(parts), reference: reference(pd),
                                      shape: [3, total, 3, 5])
        let dParts = try Elementwise.splitChannels(try DenseTensor(shape: [3, total, 3, 5], values: r.map(Float.init)), counts: counts)
        XCTAssertEqual(dParts.count, counts.count)
        var errors: [String: Double] = [:]
        for k in counts.indices {
            let d = FiniteDifference.gradient(of: pd[k], at: Array(pd[k].indices)) { pk, _ in
                var ps = pd
                ps[k] = pk
                return weightedSum(reference(ps), r)
            }
            errors["dPart\(k)"] = FiniteDifference.check("cat dPart\(k)", kernel: dParts[k], shape: parts[k].shape, reference: d)
        }
        FiniteDifference.report("cat", errors, probes: parts.map(\.count))
    }
}
