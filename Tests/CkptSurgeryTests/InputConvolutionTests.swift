import Foundation
import XCTest
@testable import CkptSurgery

/// Input-conv adaptation against timm's own `adapt_input_conv` and the modes' definitions
/// (fixtures/surgery/adapt_input_conv.json, written by fixtures/surgery/generate.py with torch and timm).
final class InputConvolutionTests: XCTestCase {
    static func golden() throws -> [String: Any] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/surgery/adapt_input_conv.json")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    static func source(_ g: [String: Any], _ name: String) throws -> [Float] {
        try XCTUnwrap((g["source_values"] as? [String: Any])?[name] as? [Double]).map { Float($0) }
    }

    func check(_ entries: [[String: Any]], source: [Float], shape: [Int], mode: (([String: Any]) -> InputChannelMode?)) throws -> Int {
        var checked = 0
        for e in entries {
            guard let m = mode(e) else { continue }
            let c = try XCTUnwrap(e["in_chans"] as? Int)
            let want = try XCTUnwrap(e["values"] as? [Double]).map { Float($0) }
            let got = try InputConvolution.adapt(source, shape: shape, to: c, mode: m)
            XCTAssertEqual(got.count, want.count)
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-6, "\(m) to \(c) channels: \(e["rule"] ?? e["definition"] ?? "")")
            checked += 1
        }
        return checked
    }

    func testTimmRuleFromThreeChannels() throws {
        let g = try Self.golden()
        let entries = try XCTUnwrap(g["timm"] as? [[String: Any]])
        let n = try check(entries, source: try Self.source(g, "8x3x3x3"), shape: [8, 3, 3, 3]) { _ in .automatic }
        XCTAssertEqual(n, 4)  // 1, 2, 4, 6 channels
    }

    func testGeneralisationFromFourChannels() throws {
        let g = try Self.golden()
        let entries = try XCTUnwrap(g["generalised"] as? [[String: Any]])
        let n = try check(entries, source: try Self.source(g, "8x4x3x3"), shape: [8, 4, 3, 3]) { _ in .automatic }
        XCTAssertEqual(n, 3)
    }

    func testEveryModeAsDefined() throws {
        let g = try Self.golden()
        let entries = try XCTUnwrap(g["modes"] as? [[String: Any]])
        let n = try check(entries, source: try Self.source(g, "8x3x3x3"), shape: [8, 3, 3, 3]) { e in
            (e["mode"] as? String).flatMap(InputChannelMode.init(rawValue:))
        }
        XCTAssertEqual(n, 5)
        XCTAssertThrowsError(try InputConvolution.adapt([1, 2], shape: [2], to: 1, mode: .sum))
    }
}
