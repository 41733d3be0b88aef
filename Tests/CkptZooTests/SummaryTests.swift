import CkptNN
import CkptZoo
import XCTest

final class SummaryTests: XCTestCase {
    func testResNet18SummaryCountsLikeTorchinfo() throws {
        let model = try Zoo.make("resnet18", initialize: false)
        let s = try model.summarize(inputShapes: [[1, 3, 224, 224]])
        XCTAssertEqual(s.totalParameters, 11_689_512)
        XCTAssertEqual(s.trainableParameters, 11_689_512)
        // torchinfo 1.8 reports 1,814,083,944 mult-adds (fixtures/zoo/summary.json)
        XCTAssertEqual(s.multAdds, 1_814_083_944)
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

    /// Totals and every leaf layer's output shape and mult-adds equal torchinfo 1.8's
    /// (fixtures/zoo/generate_summary.py): convolutions with and without bias, batch norm, linear,
    /// grouped (ResNeXt), pooling, batch 2, and SegNet's transposed convolutions and shared triples.
    func testSummariesEqualTorchinfo() throws {
        let cases = try XCTUnwrap(Fixtures.json("summary.json")["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 7)
        for c in cases {
            let name = try XCTUnwrap(c["model"] as? String)
            let shapes = try XCTUnwrap(c["input_shapes"] as? [[Int]])
            let s = try Zoo.make(name, initialize: false).summarize(inputShapes: shapes)
            XCTAssertEqual(s.totalParameters, c["total_params"] as? Int, name)
            XCTAssertEqual(s.trainableParameters, c["trainable_params"] as? Int, name)
            XCTAssertEqual(s.nonTrainableParameters, c["non_trainable_params"] as? Int, name)
            XCTAssertEqual(s.multAdds, c["total_mult_adds"] as? Int, name)
            let leaves = try XCTUnwrap(c["leaves"] as? [[String: Any]])
            let ours = s.rows.filter(\.isLeaf)
            XCTAssertEqual(ours.count, leaves.count, "\(name): leaf calls")
            for (row, golden) in zip(ours, leaves) {
                XCTAssertEqual(row.outputShape, golden["output_shape"] as? [Int], "\(name) \(row.path)")
                XCTAssertEqual(row.multAdds, golden["mult_adds"] as? Int, "\(name) \(row.path)")
            }
        }
    }
}
