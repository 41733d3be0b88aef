import CkptNN
import CkptZoo
import XCTest

/// Every zoo architecture's state-dict contract equals torchvision's (fixtures/zoo/keys.json):
/// same keys in the same order, shapes, dtypes, parameter/buffer roles, sharing and counts.
final class KeyContractTests: XCTestCase {
    func testEveryArchitectureMatchesTorchKeys() throws {
        let root = try Fixtures.json("keys.json")
        let models = try XCTUnwrap(root["models"] as? [String: Any])
        XCTAssertEqual(Set(models.keys), Set(Zoo.names), "zoo and golden list the same architectures")
        for name in Zoo.names {
            let golden = try XCTUnwrap(models[name] as? [String: Any], name)
            let classes = try XCTUnwrap(golden["num_classes"] as? Int)
            let model = try Zoo.make(name, numClasses: classes, initialize: false)
            let rows = try XCTUnwrap(golden["keys"] as? [[Any]])
            let expected = rows.map { r in "\(r[0]) \(r[1]) \(r[2]) \(r[3])" }
            let got = model.parameterSpecs().map { "\($0.key) \($0.shape) \($0.dtype.rawValue) \($0.role.rawValue)" }
            XCTAssertEqual(got.count, expected.count, "\(name): key count")
            for (g, e) in zip(got, expected) where g != e {
                XCTFail("\(name): first difference: got \(g), torch \(e)")
                break
            }
            let shared = try XCTUnwrap(golden["shared"] as? [[String]])
            XCTAssertEqual(model.sharedKeyGroups(), shared, "\(name): shared keys")
            XCTAssertEqual(model.parameterCount, golden["parameter_count"] as? Int, "\(name): parameter count")
        }
    }

    func testUnknownModelListsTheZoo() {
        XCTAssertThrowsError(try Zoo.make("resnet19")) { e in
            XCTAssertTrue("\(e)".hasPrefix("unknown model 'resnet19'; did you mean 'resnet18'? the zoo has: vgg11, vgg13"), "\(e)")
        }
    }

    func testNumClassesChangesOnlyTheHead() throws {
        let a = try Zoo.make("resnet18", numClasses: 10, initialize: false).parameterSpecs()
        let b = try Zoo.make("resnet18", initialize: false).parameterSpecs()
        XCTAssertEqual(a.last?.shape, [10])
        XCTAssertEqual(b.last?.shape, [1000])
        XCTAssertEqual(a.map(\.key), b.map(\.key))
        XCTAssertThrowsError(try Zoo.make("resnet18", numClasses: 0))
    }
}
