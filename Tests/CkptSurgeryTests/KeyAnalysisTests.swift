import XCTest
@testable import CkptSurgery
import CkptTensor

final class KeyAnalysisTests: XCTestCase {
    private func keyed(_ pairs: [(String, [Int])]) -> [(key: String, shape: [Int])] { pairs.map { (key: $0.0, shape: $0.1) } }

    func testResNetDepthsFromBlockCounts() {
        var keys: [(String, [Int])] = [("conv1.weight", [64, 2, 7, 7]), ("fc.weight", [5, 512])]
        for (l, n) in [(1, 3), (2, 4), (3, 6), (4, 3)] { for b in 0 ..< n { keys.append(("layer\(l).\(b).conv1.weight", [64, 64, 3, 3])) } }
        let g = KeyAnalysis.guessArchitecture(keyed(keys))
        XCTAssertEqual(g, ArchitectureGuess(name: "resnet34", numClasses: 5, inputChannels: 2))
        XCTAssertEqual(g?.summary, "resnet34, 5 classes, 2 input channels")
    }

    func testResNeXtAndWideFromGroupedConv() {
        var keys: [(String, [Int])] = [("conv1.weight", [64, 3, 7, 7]), ("fc.weight", [1000, 2048])]
        for (l, n) in [(1, 3), (2, 4), (3, 6), (4, 3)] { for b in 0 ..< n { keys.append(("layer\(l).\(b).conv1.weight", [128, 64, 1, 1])) } }
        keys.append(("layer1.0.conv3.weight", [256, 128, 1, 1]))
        var grouped = keys; grouped.append(("layer1.0.conv2.weight", [128, 4, 3, 3]))
        XCTAssertEqual(KeyAnalysis.guessArchitecture(keyed(grouped))?.name, "resnext50_32x4d")
        var wide = keys; wide.append(("layer1.0.conv2.weight", [128, 128, 3, 3]))
        XCTAssertEqual(KeyAnalysis.guessArchitecture(keyed(wide))?.name, "wide_resnet50_2")
    }

    func testVGGWithBatchNorm() {
        var keys: [(String, [Int])] = []
        for i in 0 ..< 16 { keys.append(("features.\(i * 3).weight", [64, i == 0 ? 3 : 64, 3, 3])); keys.append(("features.\(i * 3 + 1).running_mean", [64])) }
        keys.append(("classifier.6.weight", [10, 4096]))
        XCTAssertEqual(KeyAnalysis.guessArchitecture(keyed(keys)), ArchitectureGuess(name: "vgg19_bn", numClasses: 10, inputChannels: 3))
    }

    func testUnknownKeysGiveNoGuess() {
        XCTAssertNil(KeyAnalysis.guessArchitecture(keyed([("encoder.w", [3, 3])])))
    }

    func testBuffersAreRecognised() {
        XCTAssertTrue(KeyAnalysis.isBuffer("layer1.0.bn1.running_var"))
        XCTAssertTrue(KeyAnalysis.isBuffer("bn1.num_batches_tracked"))
        XCTAssertFalse(KeyAnalysis.isBuffer("bn1.weight"))
    }

    func testRolesFollowWhatTorchAllowsAParameterToBe() throws {
        let w = try Tensor(float32: [1, 2], shape: [2])
        let scalar = try Tensor(float32: [0.5], shape: [1])
        let ids = try Tensor(dtype: .int64, shape: [2], bytes: [UInt8](repeating: 0, count: 16))
        let mask = try Tensor(dtype: .bool, shape: [2], bytes: [1, 0])
        let qweight = try Tensor(dtype: .qint8, shape: [2], bytes: [1, 2])
        let zeroPoint = try Tensor(dtype: .int64, shape: [], bytes: [UInt8](repeating: 0, count: 8))
        let table: [String: Tensor] = ["fc.weight": qweight, "fc.scale": scalar, "fc.zero_point": zeroPoint,
                                       "quant.scale": scalar, "quant.zero_point": zeroPoint,
                                       "norm.scale": scalar, "emb.weight": w, "tokens": ids, "adj": mask]
        func role(_ k: String) -> ParameterRole { KeyAnalysis.role(of: k, table[k]!, tensorNamed: { table[$0] }) }
        XCTAssertEqual(role("emb.weight"), .parameter)
        XCTAssertEqual(role("fc.weight"), .parameter)      // a quantized module's weight
        XCTAssertEqual(role("fc.scale"), .buffer)          // beside a quantized weight
        XCTAssertEqual(role("quant.scale"), .buffer)       // a QuantStub: beside its zero_point
        XCTAssertEqual(role("fc.zero_point"), .buffer)
        XCTAssertEqual(role("norm.scale"), .parameter)     // a learnable one-element scale stays a parameter
        XCTAssertEqual(role("tokens"), .buffer)            // integer and bool tensors cannot be parameters
        XCTAssertEqual(role("adj"), .buffer)
        var pinned = ids
        pinned.isParameter = true                          // what the file says wins
        XCTAssertEqual(KeyAnalysis.role(of: "tokens", pinned, tensorNamed: { table[$0] }), .parameter)
    }

    func testNestedRootAndWrapperPrefix() throws {
        let t = try Tensor(float32: [1, 2], shape: [2])
        let sd = Value.dict(PyDict(items: [(.string("module.fc.weight"), .tensor(t)), (.string("module.fc.bias"), .tensor(t))], kind: .orderedDict))
        let root = Value.dict(PyDict(items: [(.string("epoch"), .int(3)), (.string("model_state_dict"), sd)]))
        let located = KeyAnalysis.locateStateDict(Checkpoint(root: root, info: FormatInfo(format: .zip)))
        XCTAssertEqual(located.rootPath, "model_state_dict")
        XCTAssertEqual(located.wrapperPrefix, "module.")
        XCTAssertEqual(located.unwrappedKeys, ["fc.weight", "fc.bias"])
    }

    /// A scalar tensor metric beside the model (`best_acc = torch.tensor(0.75)`) leaves the named
    /// state dict the model's; a weight-sized tensor at the root keeps the root.
    func testScalarMetricsBesideANamedStateDict() throws {
        let w = try Tensor(float32: [1, 2], shape: [2]), acc = try Tensor(float32: [0.75], shape: [])
        let sd = Value.dict(PyDict(items: [(.string("fc.weight"), .tensor(w))], kind: .orderedDict))
        let optimizer = Value.dict(PyDict(items: [(.string("state"), .dict(PyDict(items: [(.int(0), .dict(PyDict(items: [(.string("momentum_buffer"), .tensor(w))])))])))]))
        func locate(_ items: [(key: Value, value: Value)]) -> LocatedStateDict {
            KeyAnalysis.locateStateDict(Checkpoint(root: .dict(PyDict(items: items)), info: FormatInfo(format: .zip)))
        }
        let metric = locate([(.string("epoch"), .int(3)), (.string("state_dict"), sd), (.string("best_acc"), .tensor(acc)), (.string("optimizer"), optimizer)])
        XCTAssertEqual(metric.rootPath, "state_dict")
        XCTAssertEqual(metric.unwrappedKeys, ["fc.weight"])
        let weights = locate([(.string("state_dict"), sd), (.string("extra.weight"), .tensor(w))])
        XCTAssertEqual(weights.rootPath, "")
    }

    func testAnOptimizerStateDictHoldsNoModelWeights() throws {
        let w = try Tensor(float32: [1, 2], shape: [2])
        let state = Value.dict(PyDict(items: [(.int(0), .dict(PyDict(items: [(.string("exp_avg"), .tensor(w))])))]))
        let root = Value.dict(PyDict(items: [(.string("state"), state), (.string("param_groups"), .list([]))]))
        let located = KeyAnalysis.locateStateDict(Checkpoint(root: root, info: FormatInfo(format: .zip)))
        XCTAssertTrue(located.isOptimizerState)
        XCTAssertTrue(located.raw.isEmpty)
    }
}
