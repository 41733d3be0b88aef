import CkptNN
import CkptSurgery
import CkptTensor
import CkptZoo
import Foundation
import XCTest
@testable import CkptTrain

/// The activation proof and the fresh values a transplant writes.
final class TransplantProofTests: XCTestCase {
    /// Entry k, element i: `sin(0.37·i + 0.11·k)` scaled per kind, as fixtures/zoo/generate_zoo.py writes weights.
    static func formula(_ specs: [ParameterSpec]) throws -> StateDict {
        StateDict(try specs.enumerated().map { k, spec in
            if spec.dtype == .int64 {
                return (spec.key, try Tensor(dtype: .int64, shape: spec.shape, bytes: [UInt8](repeating: 0, count: 8 * spec.elementCount)))
            }
            let fan = spec.shape.count >= 2 ? spec.shape.dropFirst().reduce(1, *) : 1
            let values = (0 ..< spec.elementCount).map { i -> Float in
                let s = sin(0.37 * Double(i) + 0.11 * Double(k))
                if spec.key.hasSuffix("running_var") { return Float(0.5 + 0.25 * (1 + s)) }
                if spec.key.hasSuffix("running_mean") { return Float(0.1 * s) }
                if spec.shape.count >= 2 { return Float(s * 2 / Double(fan).squareRoot()) }
                return Float(spec.key.hasSuffix("weight") ? 1 + 0.2 * s : 0.1 * s)
            }
            return (spec.key, try Tensor(float32: values, shape: spec.shape))
        })
    }

    func testResNetTransplantWithNewHeadProvesEveryBlock() throws {
        let source = try Self.formula(try Zoo.specification("resnet18").parameterSpecs)
        let target = try Zoo.specification("resnet18", numClasses: 5).parameterSpecs
        var options = TransplantOptions()
        options.headKeys = Set(try Zoo.headKeys("resnet18", numClasses: 5))
        options.replaceHead = true
        let plan = try Planner.plan(source: source.shapes, target: target, rules: [], options: options)
        let fresh = try Zoo.initialValues("resnet18", numClasses: 5, seed: 3, keys: plan.entries.filter(\.needsInitialValue).map(\.spec.key))
        XCTAssertEqual(Set(fresh.keys), ["fc.weight", "fc.bias"])
        let (output, casts) = try plan.apply(source: source, initialValues: fresh, dtype: .keep)
        XCTAssertTrue(casts.isEmpty)
        XCTAssertEqual(output.keys, target.map(\.key))
        // copied tensors are the source's own storage: no copy made
        XCTAssertTrue(output["layer3.1.conv2.weight"]?.storage === source["layer3.1.conv2.weight"]?.storage)

        let checks = try TransplantProof.verify(plan: plan, source: source, sourceModel: "resnet18", sourceClasses: 1000,
                                                output: output, targetModel: "resnet18", targetClasses: 5)
        XCTAssertEqual(checks.map(\.block), ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"])
        for c in checks { XCTAssertEqual(c.maxAbsDiff, 0, c.block) }

        // a tensor that did not land is caught
        var broken = output
        var values = try XCTUnwrap(output["layer2.1.bn2.weight"]).floats()
        values[3] += 0.5
        broken["layer2.1.bn2.weight"] = try Tensor(float32: values, shape: [values.count])
        let failed = try TransplantProof.verify(plan: plan, source: source, sourceModel: "resnet18", sourceClasses: 1000,
                                                output: broken, targetModel: "resnet18", targetClasses: 5)
        let layer2 = try XCTUnwrap(failed.first { $0.block == "layer2" })
        XCTAssertGreaterThan(layer2.maxAbsDiff ?? 0, 1e-3)
        XCTAssertFalse(layer2.passes(tolerance: TransplantProof.tolerance))
        XCTAssertEqual(failed.filter { $0.block != "layer2" }.compactMap(\.maxAbsDiff), [0, 0, 0, 0, 0])
    }

    func testAdaptedInputConvolutionIsProvedOnFoldedInputs() throws {
        // vgg11_bn's features[0:3] into segnet's two-channel input block, every mode that computes a weight
        // only the keys the block needs: the proof loads one block at a time
        let source = try Self.formula(try Zoo.specification("vgg19_bn").parameterSpecs.filter { $0.key.hasPrefix("features.0.") || $0.key.hasPrefix("features.1.") })
        let target = try Zoo.specification("segnet").parameterSpecs.filter { $0.key.hasPrefix("input.") }
        for mode in [InputChannelMode.automatic, .sum, .mean, .zero] {
            var options = TransplantOptions()
            options.inputConvolutionKey = "input.0.weight"
            options.inputChannelMode = mode
            let plan = try Planner.plan(source: source.shapes, target: target, rules: [try TransplantRule.map("0:3=input")], options: options)
            let fresh = try Zoo.initialValues("segnet", seed: 0, keys: plan.entries.filter(\.needsInitialValue).map(\.spec.key))
            let (output, _) = try plan.apply(source: source, initialValues: fresh, dtype: .keep)
            let checks = try TransplantProof.verify(plan: plan, source: source, sourceModel: "vgg19_bn", sourceClasses: 1000,
                                                    output: output, targetModel: "segnet", targetClasses: 2)
            let input = try XCTUnwrap(checks.first { $0.block == "input" }, "\(mode)")
            XCTAssertEqual(input.source, "features[0:3]")
            XCTAssertLessThanOrEqual(try XCTUnwrap(input.maxAbsDiff, "\(mode): \(input.note ?? "")"), 1e-5, "\(mode)")
        }
    }

    func testReinitialisationFollowsTorchvisionAndIsStablePerModule() throws {
        let vgg = try Zoo.initialValues("vgg11", numClasses: 7, seed: 1, keys: ["classifier.6.weight", "classifier.6.bias"])
        let w = try XCTUnwrap(vgg["classifier.6.weight"]).floats()
        XCTAssertEqual(w.count, 7 * 4096)
        let mean = w.reduce(0, +) / Float(w.count)
        let std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(w.count)).squareRoot()
        XCTAssertEqual(Double(std), 0.01, accuracy: 0.0005)  // normal_(0, 0.01)
        XCTAssertEqual(try XCTUnwrap(vgg["classifier.6.bias"]).floats(), [Float](repeating: 0, count: 7))
        // asking for more keys does not change a module's values
        let more = try Zoo.initialValues("vgg11", numClasses: 7, seed: 1, keys: ["classifier.0.bias", "classifier.6.weight"])
        XCTAssertEqual(try XCTUnwrap(more["classifier.6.weight"]).floats(), w)

        let fc = try Zoo.initialValues("resnet18", numClasses: 5, seed: 0, keys: ["fc.weight", "fc.bias"])
        let bound = 1 / Float(512).squareRoot()  // kaiming_uniform(a=√5) on fan_in 512
        let fw = try XCTUnwrap(fc["fc.weight"]).floats()
        XCTAssertTrue(fw.allSatisfy { abs($0) <= bound })
        XCTAssertGreaterThan(fw.map(abs).max() ?? 0, bound * 0.95)
        XCTAssertTrue(try XCTUnwrap(fc["fc.bias"]).floats().allSatisfy { abs($0) <= bound })

        // segnet's shared decoder triples: one tensor for every key of one parameter
        let keys = ["dec5.1.weight", "dec5.4.weight", "dec5.7.weight", "dec5.10.weight"]
        let shared = try Zoo.initialValues("segnet", seed: 0, keys: keys)
        let storages = Set(keys.compactMap { shared[$0].map { ObjectIdentifier($0.storage) } })
        XCTAssertEqual(storages.count, 1)
    }

    func testTemplateValuesUsePyTorchDefaults() throws {
        let specs = [
            ParameterSpec(key: "head.weight", shape: [5, 512], dtype: .float32, role: .parameter),
            ParameterSpec(key: "head.bias", shape: [5], dtype: .float32, role: .parameter),
            ParameterSpec(key: "norm.weight", shape: [4], dtype: .float32, role: .parameter),
            ParameterSpec(key: "norm.bias", shape: [4], dtype: .float32, role: .parameter),
            ParameterSpec(key: "norm.running_mean", shape: [4], dtype: .float32, role: .buffer),
            ParameterSpec(key: "norm.running_var", shape: [4], dtype: .float32, role: .buffer),
            ParameterSpec(key: "norm.num_batches_tracked", shape: [], dtype: .int64, role: .buffer),
        ]
        XCTAssertEqual(TemplateInitialization.headKeys(specs), ["head.weight", "head.bias"])
        let v = try TemplateInitialization.values(for: specs, among: specs, seed: 0)
        XCTAssertTrue(try XCTUnwrap(v["head.weight"]).floats().allSatisfy { abs($0) <= 1 / Float(512).squareRoot() })
        XCTAssertEqual(try XCTUnwrap(v["norm.weight"]).floats(), [1, 1, 1, 1])
        XCTAssertEqual(try XCTUnwrap(v["norm.running_var"]).floats(), [1, 1, 1, 1])
        XCTAssertEqual(try XCTUnwrap(v["norm.bias"]).floats(), [0, 0, 0, 0])
        XCTAssertEqual(v["norm.num_batches_tracked"]?.dtype, .int64)
    }
}
