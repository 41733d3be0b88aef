import CkptNN
import CkptZoo
import XCTest

final class SummaryTests: XCTestCase {
    func testResNet18SummaryCountsLikeTorchinfo() throws {
        let model = try Zoo.make("resnet18", initialize: false)
        let s = try model.summarize(inputShapes: [[1, 3, 224, 224]])
        XCTAssertEqual(s.totalParameters, 11_689_512)
        XCTAssertEqual(s.trainableParameters, 11_689_512)
        // torchinfo reports 1.81 G mult-adds for resnet18 at 224 (convs and fc; BN adds a little)
        XCTAssertEqual(Double(s.multAdds) / 1e9, 1.81, accuracy: 0.02)
        let fc = try XCTUnwrap(s.rows.first { $0.path == "fc" })
        XCTAssertEqual(fc.outputShape, [1, 1000])
        XCTAssertEqual(fc.parameterCount, 513_000)
        XCTAssertEqual(s.rows.last?.path, "fc")
        XCTAssertTrue(s.rows.contains { $0.path == "layer1.0.relu" && $0.isRepeat })
    }

    func testSegNetSummaryNamesSharedLayersOnce() throws {
        let model = try Zoo.make("segnet", initialize: false)
        let s = try model.summarize(inputShapes: [[1, 1, 32, 32], [1, 1, 32, 32]])
        XCTAssertEqual(s.rows.last?.outputShape, [1, 2, 32, 32])
        let repeats = s.rows.filter { $0.path.hasPrefix("dec5.") && $0.isRepeat }.map(\.path)
        XCTAssertEqual(repeats.prefix(3), ["dec5.4", "dec5.5", "dec5.6"])
        XCTAssertEqual(s.totalParameters, model.parameterCount)
        XCTAssertFalse(s.sharedKeyGroups.isEmpty)
    }
}
