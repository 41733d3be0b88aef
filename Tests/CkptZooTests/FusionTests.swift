import CkptKernels
import CkptNN
import CkptZoo
import XCTest

/// Folded batch norms and fused ReLUs change only float32 rounding.
final class FusionTests: XCTestCase {
    func testFusedAndLayerByLayerAgree() throws {
        for (name, shapes) in [("resnet18", [[1, 3, 64, 64]]), ("segnet", [[1, 1, 32, 32], [1, 1, 32, 32]])] {
            let model = try Zoo.make(name, initialize: false)
            try model.load(stateDict: try Fixtures.formulaStateDict(model.parameterSpecs()))
            let inputs = try shapes.enumerated().map { try Fixtures.formulaInput($1, argument: $0) }
            let fused = try model.evaluate(inputs)
            let plain = try model.evaluate(inputs, fuse: false)
            var worst: Float = 0
            for (a, b) in zip(fused.values, plain.values) { worst = max(worst, abs(a - b)) }
            print("\(name): fused vs layer-by-layer max|Δ| = \(worst), max|y| = \(plain.maxMagnitude)")
            XCTAssertLessThanOrEqual(worst, 1e-4 * plain.maxMagnitude + 1e-6, name)
        }
    }
}
