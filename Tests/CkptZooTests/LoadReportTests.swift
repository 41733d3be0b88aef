import CkptKernels
import CkptNN
import CkptTensor
import CkptZoo
import XCTest

/// Loading reports missing, unexpected and mismatched keys in one result; strictness decides.
final class LoadReportTests: XCTestCase {
    func smallState() throws -> (Module, [(key: String, tensor: Tensor)]) {
        let model = try Zoo.make("smallcnn", initialize: false)
        return (model, try Fixtures.formulaStateDict(model.parameterSpecs()))
    }

    func testStrictLoadRejectsAndLeavesModelUntouched() throws {
        let (model, state) = try smallState()
        var edited = state.filter { $0.key != "model.0.bias" }
        edited.append((key: "model.9.weight", tensor: try Tensor(float32: [1], shape: [1])))
        if let i = edited.firstIndex(where: { $0.key == "model.7.weight" }) {
            edited[i] = (key: "model.7.weight", tensor: try Tensor(float32: [Float](repeating: 0, count: 64 * 2048), shape: [64, 2048]))
        }
        XCTAssertThrowsError(try model.load(stateDict: edited)) { e in
            guard case let NNError.load(report) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(report.missing.map(\.key), ["model.0.bias"])
            XCTAssertEqual(report.unexpected.map(\.key), ["model.9.weight"])
            XCTAssertEqual(report.mismatched, [.init(key: "model.7.weight", expected: [64, 1024], got: [64, 2048])])
            XCTAssertEqual("\(e)", "state dict does not fit the model: 1 shape mismatch(es): model.7.weight model [64, 1024] checkpoint [64, 2048]; 1 missing key(s): model.0.bias; 1 unexpected key(s): model.9.weight")
        }
        let conv = try XCTUnwrap(model.submodule(at: "model.0") as? Conv2d)
        XCTAssertEqual(conv.weight.value.maxMagnitude, 0, "a rejected load changes nothing")

        let report = try model.load(stateDict: edited, strictness: .lenient)
        XCTAssertFalse(report.isExact)
        XCTAssertEqual(report.loaded.count, state.count - 2)
        XCTAssertGreaterThan(conv.weight.value.maxMagnitude, 0)
    }

    func testExportRoundTripsInTorchOrder() throws {
        let (model, state) = try smallState()
        try model.load(stateDict: state)
        let exported = try model.stateDict()
        XCTAssertEqual(exported.map(\.key), state.map(\.key))
        for (a, b) in zip(exported, state) {
            XCTAssertEqual(a.tensor.dtype, b.tensor.dtype)
            XCTAssertEqual(try a.tensor.floats(), try b.tensor.floats(), a.key)
        }
    }

    func testHalfPrecisionIsConvertedAndReported() throws {
        let (model, state) = try smallState()
        let half = try state.map { item -> (key: String, tensor: Tensor) in
            guard item.key == "model.0.bias" else { return item }
            let bits = try item.tensor.floats().flatMap { f -> [UInt8] in
                let h = HalfFloat.halfBits(from: f)
                return [UInt8(h & 0xFF), UInt8(h >> 8)]
            }
            return (item.key, try Tensor(dtype: .float16, shape: item.tensor.shape, bytes: bits))
        }
        let report = try model.load(stateDict: half)
        XCTAssertEqual(report.converted.map(\.key), ["model.0.bias"])
    }

    func testSegNetKeepsRepeatedTriplesShared() throws {
        let model = try Zoo.make("segnet", initialize: false)
        let groups = model.sharedKeyGroups()
        XCTAssertTrue(groups.contains(["dec5.1.weight", "dec5.4.weight", "dec5.7.weight", "dec5.10.weight"]))
        var state = try Fixtures.formulaStateDict(model.parameterSpecs())
        let report = try model.load(stateDict: state)
        // the formula gives each key different values: the last key wins and the conflict is reported
        XCTAssertTrue(report.sharedConflicts.contains(["dec5.1.weight", "dec5.4.weight", "dec5.7.weight", "dec5.10.weight"]))
        let last = try XCTUnwrap(state.first { $0.key == "dec5.10.weight" }).tensor
        let conv = try XCTUnwrap(model.submodule(at: "dec5.1") as? Conv2d)
        XCTAssertEqual(conv.weight.value.values, try last.floats())
        XCTAssertTrue(model.submodule(at: "dec5.1") === model.submodule(at: "dec5.7"))

        // a checkpoint saved from the shared network holds equal values: no conflict
        let exported = try model.stateDict()
        state = exported.entries
        XCTAssertTrue(try model.load(stateDict: state).sharedConflicts.isEmpty)
    }

    func testSegNetCanUntieSharedLayersWithTheSameKeys() throws {
        let tied = try Zoo.make("segnet", initialize: false)
        let untied = try Zoo.make("segnet", initialize: false, untieSharedLayers: true)
        XCTAssertEqual(untied.parameterSpecs(), tied.parameterSpecs())
        XCTAssertTrue(untied.sharedKeyGroups().isEmpty)
        XCTAssertFalse(untied.submodule(at: "dec5.1") === untied.submodule(at: "dec5.4"))
        XCTAssertGreaterThan(untied.parameterCount, tied.parameterCount)
        // a checkpoint of the shared network loads into the untied one key by key
        try untied.load(stateDict: try tied.stateDict())
    }

    func testForwardErrorsNameTheLayerAndShapes() throws {
        let model = try Zoo.make("resnet18", numClasses: 10, initialize: false)
        XCTAssertThrowsError(try model.evaluate([DenseTensor(shape: [1, 1, 32, 32])])) { e in
            XCTAssertEqual("\(e)", "conv1 (Conv2d): conv2d: input has shape [1, 1, 32, 32], expected [N, 3, H, W]")
        }
        XCTAssertThrowsError(try model.evaluate([DenseTensor(shape: [1, 3, 32, 32])], capturing: "layer9")) { e in
            XCTAssertTrue("\(e)".hasPrefix("no layer named 'layer9'"), "\(e)")
        }
        var x = DenseTensor(shape: [1, 3, 32, 32])
        x.values[5] = .nan
        XCTAssertThrowsError(try model.evaluate([x])) { e in
            XCTAssertEqual("\(e)", "input x holds a non-finite value at element 5")
        }
        let segnet = try Zoo.make("segnet", initialize: false)
        XCTAssertThrowsError(try segnet.evaluate([DenseTensor(shape: [1, 1, 32, 32])])) { e in
            XCTAssertEqual("\(e)", "model takes 2 input(s) (x1, x2), got 1")
        }
    }
}

final class InputSelectionTests: XCTestCase {
    func testInputsArePickedByName() throws {
        let segnet = try Zoo.make("segnet", initialize: false)
        let a = try Tensor(float32: [Float](repeating: 1, count: 4), shape: [1, 1, 2, 2])
        let b = try Tensor(float32: [Float](repeating: 2, count: 4), shape: [1, 1, 2, 2])
        let picked = try segnet.inputs(from: [(key: "x2", tensor: b), (key: "x1", tensor: a)])
        XCTAssertEqual(picked.map { $0.values[0] }, [1, 2])
        XCTAssertThrowsError(try segnet.inputs(from: [(key: "x", tensor: a)])) { e in
            XCTAssertEqual("\(e)", "inputs hold no tensor named 'x1' (found: x)")
        }
        let resnet = try Zoo.make("resnet18", initialize: false)
        XCTAssertEqual(try resnet.inputs(from: [(key: "image", tensor: a)]).count, 1)
        XCTAssertThrowsError(try resnet.inputs(from: [(key: "x", tensor: try Tensor(float32: [1, 2], shape: [2]))])) { e in
            XCTAssertEqual("\(e)", "input x has shape [2], expected [N, C, H, W]")
        }
    }

    func testRandomInputsFollowTheEntry() throws {
        let xs = try Zoo.entry(named: "segnet").randomInputs(batch: 2, size: 64)
        XCTAssertEqual(xs.map(\.shape), [[2, 1, 64, 64], [2, 1, 64, 64]])
    }
}
