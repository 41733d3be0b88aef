import CkptFormat
import CkptKernels
import CkptSurgery
import CkptTensor
import Foundation
import XCTest
@testable import CkptTrain

/// fixtures/finetune (written by generate.py with torch): the digits image folder, the starting
/// smallcnn weights, and what torch's transfer-learning loop made of them.
enum FineTuneFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/finetune")

    /// The digits folder (`train/` and `val/`, classes 5…9).
    static var data: String { root.appendingPathComponent("digits").path }

    /// The starting weights (float16 smallcnn with a 5-class head), located as the CLI locates them.
    static func startWeights() throws -> LocatedStateDict {
        KeyAnalysis.locateStateDict(try CheckpointReader.read(path: root.appendingPathComponent("smallcnn_start.pth").path))
    }

    /// torch's state dict after the case's training (only the trained tensors for feature_extract).
    static func expected(_ caseName: String) throws -> StateDict {
        let all = try XCTUnwrap(try CheckpointReader.read(path: root.appendingPathComponent("expected.pth").path).root.dictValue)
        let d = try XCTUnwrap(all[caseName]?.dictValue, "no case \(caseName) in expected.pth")
        return StateDict(try d.items.map { (try XCTUnwrap($0.key.stringValue), try XCTUnwrap($0.value.tensorValue)) })
    }

    /// The case's per-epoch metrics as torch measured them.
    static func metrics(_ caseName: String) throws -> [[String: Any]] {
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("expected.json"))) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [String: Any])
        let c = try XCTUnwrap(cases[caseName] as? [String: Any])
        return try XCTUnwrap(c["metrics"] as? [[String: Any]])
    }

    /// The settings every golden case shares: SGD lr 0.01, momentum 0.9, weight decay 1e-4,
    /// batch 8, no augmentation, ImageFolder order, 32×32.
    static func options(_ mode: FineTuneMode, epochs: Int) -> FineTuneOptions {
        var o = FineTuneOptions()
        o.mode = mode
        o.learningRate = 0.01
        o.momentum = 0.9
        o.weightDecay = 1e-4
        o.epochs = epochs
        o.batchSize = 8
        o.shuffle = false
        o.augment = false
        o.workers = 0
        return o
    }

    /// A run of smallcnn with 5 classes from the starting weights on the digits.
    static func run(_ options: FineTuneOptions) throws -> FineTuning {
        try FineTuning(model: "smallcnn", numClasses: 5, weights: try startWeights(), data: data, options: options)
    }

    /// Fails unless every tensor of `expected` is within `rtol · max|torch| + atol` in `ours`;
    /// returns the worst difference relative to each tensor's largest magnitude.
    @discardableResult
    static func assertClose(_ ours: StateDict, _ expected: StateDict, rtol: Double = 1e-4, atol: Double = 1e-7, _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) throws -> (Double, String) {
        var worst = (0.0, "")
        for (key, t) in expected {
            let mine = try XCTUnwrap(ours[key], "\(what): \(key) missing", file: file, line: line)
            XCTAssertEqual(mine.shape, t.shape, "\(what): \(key) shape", file: file, line: line)
            let a = try mine.floats(), b = try t.floats()
            let scale = Double(b.map { abs($0) }.max() ?? 0)
            var diff = 0.0
            for (x, y) in zip(a, b) { diff = max(diff, abs(Double(x) - Double(y))) }
            XCTAssertLessThanOrEqual(diff, rtol * scale + atol, "\(what): \(key) differs from torch by \(diff) (max |x| \(scale))",
                                     file: file, line: line)
            let relative = scale > 0 ? diff / scale : diff
            if relative > worst.0 { worst = (relative, key) }
        }
        return worst
    }

    /// The bit patterns of a tensor's float32 values.
    static func bits(_ t: Tensor) throws -> [UInt32] { try t.floats().map(\.bitPattern) }
}
