import CkptKernels
import CkptNN
import CkptZoo
import Foundation
import XCTest

// N images, C channels, H rows, W columns (NCHW).

/// Eval-mode outputs against torch (fixtures/zoo/outputs.json): weights from the formula,
/// loaded through the strict state-dict path, `max|Δ| ≤ 1e-4·max|y| + 1e-6`.
final class ForwardGoldenTests: XCTestCase {
    func check(_ name: String) throws {
        let root = try Fixtures.json("outputs.json")
        let models = try XCTUnwrap(root["models"] as? [String: Any])
        let golden = try XCTUnwrap(models[name] as? [String: Any])
        let model = try Zoo.make(name, numClasses: golden["num_classes"] as? Int, initialize: false)
        let report = try model.load(stateDict: try Fixtures.formulaStateDict(model.parameterSpecs()))
        XCTAssertTrue(report.isExact)
        let shapes = try XCTUnwrap(golden["inputs"] as? [[Int]])
        let inputs = try shapes.enumerated().map { try Fixtures.formulaInput($1, argument: $0) }
        let y = try model.evaluate(inputs)
        let worst = try Fixtures.Summary(try XCTUnwrap(golden["output"] as? [String: Any])).check(y, name)
        print("\(name): output max|Δ| = \(worst)")
        let layers = try XCTUnwrap(golden["layers"] as? [String: Any])
        for (layer, summary) in layers {
            let captured = try model.evaluate(inputs, capturing: layer)
            let w = try Fixtures.Summary(try XCTUnwrap(summary as? [String: Any])).check(captured, "\(name) \(layer)")
            print("\(name) \(layer): max|Δ| = \(w)")
        }
    }

    func testSmallCNN() throws { try check("smallcnn") }
    func testResNet18() throws { try check("resnet18") }
    func testVGG11BN() throws { try check("vgg11_bn") }
    func testAlexNet() throws { try check("alexnet") }
    func testSegNet() throws { try check("segnet") }
    func testResNeXt50() throws { try check("resnext50_32x4d") }
    func testResNet34() throws { try check("resnet34") }
    func testResNet50BatchOfTwo() throws { try check("resnet50") }
    func testVGG16() throws { try check("vgg16") }
    func testWideResNet50() throws { try check("wide_resnet50_2") }

    /// The rest of the zoo (large weights: slow in debug builds); set `CKPT_FULL_ZOO=1`.
    func testRestOfTheZoo() throws {
        guard ProcessInfo.processInfo.environment["CKPT_FULL_ZOO"] != nil else {
            throw XCTSkip("set CKPT_FULL_ZOO=1 to check every architecture's output")
        }
        for name in ["vgg11", "vgg13", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn", "resnet101", "resnet152", "resnext101_32x8d"] {
            try check(name)
        }
    }
}
