import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// The per-plane loops of the training step's memory-bound layers (max pooling with indices,
/// batch norm's forward and backward): against Double references and the earlier x̂-keeping form
/// on planes as large as ResNet's and ragged ones, and their AVX-512 builds against the portable
/// builds bit for bit.
final class TrainingPlaneKernelTests: XCTestCase {
    /// Runs `body` with the AVX-512 builds off, then (on CPUs with them) on; returns both results.
    func bothBuilds<T>(_ body: () throws -> T) rethrows -> [T] {
        defer { Microkernel.isEnabled = Microkernel.isSupported }
        var results: [T] = []
        for on in Microkernel.isSupported ? [false, true] : [false] {
            Microkernel.isEnabled = on
            results.append(try body())
        }
        return results
    }

    /// Stride-2 max pooling with indices on planes whose rows take the sixteen-window loop, the
    /// eight-window loop, the last eight windows again from one column earlier (odd lanes), and the
    /// scalar edges: outputs and indices equal ATen's scan (a Double reference), the gradient lands
    /// on the winners, and both builds agree. ResNet's stem pool (112×112, 3×3/2, padding 1) included.
    func testStrideTwoMaxPoolingWithIndicesOnWidePlanes() throws {
        typealias P = PoolGeometry
        let cases: [([Int], P)] = [
            ([2, 3, 112, 112], P(kernelSize: 3, stride: 2, padding: 1)),  // resnet's stem pool
            ([1, 2, 9, 113], P(kernelSize: 3, stride: 2, padding: 1)),
            ([1, 2, 6, 64], P(kernelSize: 2)),                            // 32 outputs: the last one needs odd lanes
            ([1, 2, 7, 50], P(kernelSize: 2, ceilMode: true)),
            ([2, 2, 5, 71], P(kernelSize: 3, stride: 2)),
            ([1, 1, 6, 37], P(kernelSize: 3, stride: 2, padding: 1, ceilMode: true)),
            ([1, 2, 4, 20], P(kernelSize: 2)),                            // 10 outputs: one block and the odd-lane block
            ([1, 1, 5, 17], P(kernelSize: 2)),                            // 8 outputs: no odd-lane block (it would start at column −1)
        ]
        for (i, (shape, g)) in cases.enumerated() {
            var rng = SplitMix64(seed: 0x9001 + UInt64(i))
            let count = shape.reduce(1, *)
            // three distinct values: ties in most windows, so the scan order decides the index
            var values = (0 ..< count).map { _ in Float(rng.next() % 3) }
            values[count / 2] = .nan
            values[count / 3] = .nan
            values[count / 3 + 2] = .nan
            let x = try DenseTensor(shape: shape, values: values)
            let expected = PoolReference(g).maximum(x.doubles, shape: shape)
            let plane = shape[2] * shape[3]
            let runs = try bothBuilds { try Pooling.maxForwardWithIndices(x, geometry: g) }
            for (build, (y, indices)) in runs.enumerated() {
                let what = "max pool \(shape) k\(g.kernelSize) p\(g.padding) ceil \(g.ceilMode), build \(build)"
                XCTAssertEqual(y.shape, expected.shape, what)
                XCTAssertEqual(indices.map(Int.init), expected.winners.map { $0 % plane }, "\(what): indices")
                for (j, e) in expected.values.enumerated() where !(e.isNaN && y.values[j].isNaN) {
                    XCTAssertEqual(Double(y.values[j]), e, "\(what): output \(j)")
                }
            }
            if runs.count == 2 {
                XCTAssertEqual(runs[0].indices, runs[1].indices, "\(shape): builds' indices")
                XCTAssertEqual(runs[0].output.values.map(\.bitPattern), runs[1].output.values.map(\.bitPattern), "\(shape): builds' outputs")
            }
            let dY = try rng.tensor(expected.shape, scale: 1)
            var routed = [Float](repeating: 0, count: count)
            for (o, winner) in expected.winners.enumerated() { routed[winner] += dY.values[o] }
            let dX = try Pooling.maxBackward(dY, indices: runs[0].indices, inputShape: shape)
            XCTAssertEqual(dX.values, routed, "\(shape): dInput")
        }
    }

    /// Batch norm's backward from the input and the batch mean (x̂ formed as it is read) equals the
    /// backward given x̂ as the forward would have stored it, bit for bit, with and without a ReLU's
    /// mask, batch and running statistics, on planes of 56×56 (resnet's layer1) and ragged ones.
    func testBatchNormBackwardFromInputEqualsStoredNormalized() throws {
        for (i, shape) in [[3, 4, 56, 56], [2, 3, 7, 9], [5, 2, 1, 17], [4, 3]].enumerated() {
            var rng = SplitMix64(seed: 0x8a00 + UInt64(i))
            let c = shape[1]
            let plane = shape.dropFirst(2).reduce(1, *)
            let x = try rng.tensor(shape, scale: 2)
            let gamma = try rng.tensor([c], scale: 1), beta = try rng.tensor([c], scale: 1)
            let dY = try rng.tensor(shape, scale: 1)
            let (y, batch) = try BatchNormalization.trainingForward(x, weight: gamma, bias: beta, epsilon: 1e-5, epilogue: .relu)
            // x̂ as the forward used to store it: (x − mean)·invstd per element
            var xhat = x
            for j in 0 ..< x.count {
                let ch = (j / plane) % c
                xhat.values[j] = (x.values[j] - batch.mean[ch]) * batch.inverseStandardDeviation[ch]
            }
            for relu in [nil, y] as [DenseTensor?] {
                for batchStatistics in [true, false] {
                    let stored = try BatchNormalization.backward(dY, normalized: xhat, inverseStandardDeviation: batch.inverseStandardDeviation,
                                                                 weight: gamma, batchStatistics: batchStatistics, needs: .all, reluOutput: relu)
                    let formed = try BatchNormalization.backward(dY, input: x, mean: batch.mean,
                                                                 inverseStandardDeviation: batch.inverseStandardDeviation,
                                                                 weight: gamma, batchStatistics: batchStatistics, needs: .all, reluOutput: relu)
                    let what = "\(shape) relu \(relu != nil) batch statistics \(batchStatistics)"
                    XCTAssertEqual(formed.dInput?.values.map(\.bitPattern), stored.dInput?.values.map(\.bitPattern), "\(what): dInput")
                    XCTAssertEqual(formed.dWeight, stored.dWeight, "\(what): dγ")
                    XCTAssertEqual(formed.dBias, stored.dBias, "\(what): dβ")
                }
            }
        }
    }

    /// The ReLU's mask formed from the input (`x̂·γ + β ≤ 0`, `reluAfterBias`) equals the mask read
    /// from the ReLU's output bit for bit, on both builds: resnet-sized planes, ragged planes, a
    /// plane of one element, β large enough that whole channels are masked or none; and a mask
    /// from the input is refused for running statistics.
    func testBatchNormReLUMaskFormedFromInputEqualsReadMask() throws {
        for (i, shape) in [[3, 4, 56, 56], [2, 3, 7, 9], [5, 2, 1, 1], [4, 3]].enumerated() {
            var rng = SplitMix64(seed: 0x8c00 + UInt64(i))
            let c = shape[1]
            let x = try rng.tensor(shape, scale: 2)
            let gamma = try rng.tensor([c], scale: 1)
            var beta = try rng.tensor([c], scale: 1)
            beta.values[0] = 40  // nothing masked
            if c > 2 { beta.values[2] = -40 }  // everything masked
            let dY = try rng.tensor(shape, scale: 1)
            let (y, batch) = try BatchNormalization.trainingForward(x, weight: gamma, bias: beta, epsilon: 1e-5, epilogue: .relu)
            let runs = try bothBuilds { () throws -> (LayerGradients, LayerGradients) in
                let read = try BatchNormalization.backward(dY, input: x, mean: batch.mean, inverseStandardDeviation: batch.inverseStandardDeviation,
                                                           weight: gamma, batchStatistics: true, needs: .all, reluOutput: y)
                let formed = try BatchNormalization.backward(dY, input: x, mean: batch.mean, inverseStandardDeviation: batch.inverseStandardDeviation,
                                                             weight: gamma, batchStatistics: true, needs: .all, reluAfterBias: beta)
                return (read, formed)
            }
            for (build, (read, formed)) in runs.enumerated() {
                XCTAssertEqual(formed.dInput?.values.map(\.bitPattern), read.dInput?.values.map(\.bitPattern), "\(shape) build \(build): dInput")
                XCTAssertEqual(formed.dWeight, read.dWeight, "\(shape) build \(build): dγ")
                XCTAssertEqual(formed.dBias, read.dBias, "\(shape) build \(build): dβ")
            }
            XCTAssertThrowsError(try BatchNormalization.backward(dY, input: x, mean: batch.mean, inverseStandardDeviation: batch.inverseStandardDeviation,
                                                                 weight: gamma, batchStatistics: false, needs: .all, reluAfterBias: beta))
        }
    }

    /// Batch norm in training mode on a 112×112 plane batch (resnet's stem) and a ragged one: the
    /// output against a Double reference, the AVX-512 and portable builds' outputs, statistics and
    /// gradients close (their lanes sum in other orders), dγ and dβ against Double sums.
    func testBatchNormTrainingBuildsAgreeOnLargePlanes() throws {
        for (i, shape) in [[2, 3, 112, 112], [3, 2, 13, 11]].enumerated() {
            var rng = SplitMix64(seed: 0x8b00 + UInt64(i))
            let c = shape[1], n = shape[0]
            let plane = shape.dropFirst(2).reduce(1, *)
            var x = try rng.tensor(shape, scale: 1)
            for j in 0 ..< x.count { x.values[j] += Float((j / plane) % c) }  // channels with different means
            let gamma = try rng.tensor([c], scale: 1), beta = try rng.tensor([c], scale: 1)
            let dY = try rng.tensor(shape, scale: 1)
            let runs = try bothBuilds { () throws -> (DenseTensor, BatchNormBatch, LayerGradients) in
                let (y, batch) = try BatchNormalization.trainingForward(x, weight: gamma, bias: beta, epsilon: 1e-5)
                let g = try BatchNormalization.backward(dY, input: x, mean: batch.mean, inverseStandardDeviation: batch.inverseStandardDeviation,
                                                        weight: gamma, batchStatistics: true, needs: .all)
                return (y, batch, g)
            }
            // Double reference: the statistics, the output and the parameter gradients
            let m = Double(n * plane)
            for ch in 0 ..< c {
                var s = 0.0
                for img in 0 ..< n { for j in 0 ..< plane { s += Double(x.values[(img * c + ch) * plane + j]) } }
                let mean = s / m
                var q = 0.0
                for img in 0 ..< n { for j in 0 ..< plane { let d = Double(x.values[(img * c + ch) * plane + j]) - mean; q += d * d } }
                let invstd = 1 / (q / m + 1e-5).squareRoot()
                var dg = 0.0, db = 0.0, worst = 0.0
                for img in 0 ..< n {
                    for j in 0 ..< plane {
                        let at = (img * c + ch) * plane + j
                        let xh = (Double(x.values[at]) - mean) * invstd
                        dg += Double(dY.values[at]) * xh
                        db += Double(dY.values[at])
                        for (y, _, _) in runs {
                            worst = max(worst, abs(Double(y.values[at]) - (xh * Double(gamma.values[ch]) + Double(beta.values[ch]))))
                        }
                    }
                }
                XCTAssertLessThan(worst, 2e-5, "\(shape) channel \(ch): output")
                for (build, (_, batch, g)) in runs.enumerated() {
                    XCTAssertEqual(Double(batch.mean[ch]), mean, accuracy: 1e-6 * max(1, abs(mean)), "\(shape) build \(build): mean")
                    XCTAssertEqual(Double(batch.inverseStandardDeviation[ch]), invstd, accuracy: 1e-5 * invstd, "\(shape) build \(build): invstd")
                    let scale = m.squareRoot()
                    XCTAssertEqual(Double(g.dWeight?.values[ch] ?? .nan), dg, accuracy: 1e-5 * scale, "\(shape) build \(build): dγ")
                    XCTAssertEqual(Double(g.dBias?.values[ch] ?? .nan), db, accuracy: 1e-5 * scale, "\(shape) build \(build): dβ")
                }
            }
            if runs.count == 2, let a = runs[0].2.dInput, let b = runs[1].2.dInput {
                let worst = zip(a.values, b.values).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThan(worst, 1e-5 * max(1, a.maxMagnitude), "\(shape): the builds' dInput")
            }
        }
    }
}
