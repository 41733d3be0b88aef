@testable import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// TorchScript archives of torch's own modules (fixtures/torchscript, written by its generator with
/// real torch): every scripted or traced torchvision model names `__torch__.torch.nn.modules.*`
/// classes (and mangled `___torch_mangle_N` copies) in its data.pkl. ckpt lists their tensors as
/// torch.jit.load's `state_dict()` gives them (registered parameters and buffers only: not an
/// LSTM's `_flat_weights` list or a plain tensor attribute), refuses an archive whose class has no compiled code
/// (torch.jit.load fails on it), and refuses bound C++ classes by design.
final class TorchScriptModuleTests: XCTestCase {
    static let folder = GoldenFixtureTests.fixtures.appendingPathComponent("torchscript")

    static func expected() throws -> [String: JSONValue] {
        let data = try Data(contentsOf: folder.appendingPathComponent("expected.json"))
        let json = try data.withUnsafeBytes { try JSONValue.parse($0) }
        guard case let .object(files)? = json["files"] else { throw XCTSkip("no files in expected.json") }
        return Dictionary(uniqueKeysWithValues: files.map { ($0.key, $0.value) })
    }

    static func path(_ name: String) -> String { folder.appendingPathComponent("files").appendingPathComponent(name).path }

    func testScriptedAndTracedTorchModulesListWhatTorchJitLoadGives() throws {
        let expected = try Self.expected()
        for name in ["script_nn.pt", "trace_nn.pt", "script_lstm.pt"] {
            let e = try XCTUnwrap(expected[name])
            XCTAssertEqual(e["loads"], .bool(true), name)
            let ckpt = try CheckpointReader.read(path: Self.path(name))
            XCTAssertEqual(ckpt.info.format, .torchscript, name)
            XCTAssertTrue(ckpt.info.disallowedGlobals.isEmpty, "\(name): \(ckpt.info.disallowedGlobals)")
            let want = e["tensors"]?.arrayValue ?? []
            XCTAssertEqual(ckpt.tensors.map(\.path), want.compactMap { $0["name"]?.stringValue }, name)
            for ((p, t), w) in zip(ckpt.tensors, want) {
                XCTAssertEqual(t.dtype.rawValue, w["dtype"]?.stringValue, "\(name): \(p)")
                XCTAssertEqual(t.shape, GoldenFixtureTests.ints(w["shape"]), "\(name): \(p)")
                XCTAssertEqual(try t.doubles(), w["values"]?.arrayValue?.compactMap { $0.numberValue?.doubleValue }, "\(name): \(p)")
            }
        }
    }

    func testMissingCompiledCodeIsRefusedAsTorchJitLoadFails() throws {
        let e = try XCTUnwrap(try Self.expected()["script_nn_nocode.pt"])
        XCTAssertEqual(e["loads"], .bool(false))
        XCTAssertThrowsError(try CheckpointReader.read(path: Self.path("script_nn_nocode.pt"))) { error in
            guard let f = error as? FormatError else { return XCTFail("\(error)") }
            XCTAssertEqual(f.kind, .corrupt)
            XCTAssertTrue("\(f)".contains("__torch__.torch.nn.modules.conv.Conv2d has no compiled code"), "\(f)")
        }
    }

    func testBoundCppClassesAreRefusedByDesign() throws {
        XCTAssertThrowsError(try CheckpointReader.read(path: Self.path("script_qlinear.pt"))) { error in
            guard let f = error as? FormatError else { return XCTFail("\(error)") }
            XCTAssertEqual(f.kind, .refused)
            XCTAssertTrue("\(f)".contains("'__torch__.torch.classes.quantized.LinearPackedParamsBase' is a bound C++ class"), "\(f)")
        }
        // compiled classes are inert data (their code must be in the archive); bound C++ classes are not
        XCTAssertTrue(TorchZipReader.scriptTolerated(QualifiedName("__torch__.torch.nn.modules.container.___torch_mangle_3", "Sequential")))
        XCTAssertTrue(TorchZipReader.scriptTolerated(QualifiedName("__torch__.torch.ao.nn.quantized.modules.linear", "Linear")))
        XCTAssertTrue(TorchZipReader.scriptTolerated(QualifiedName("__torch__.torchvision.models.resnet", "ResNet")))
        XCTAssertFalse(TorchZipReader.scriptTolerated(QualifiedName("__torch__.torch.classes.quantized", "LinearPackedParamsBase")))
        XCTAssertTrue(TorchZipReader.scriptTolerated(QualifiedName("__torch__.torch.ao.quantization.stubs", "QuantStub")))
        XCTAssertTrue(TorchZipReader.scriptTolerated(QualifiedName("__torch__.torch.fx.graph_module", "M")))
        XCTAssertFalse(TorchZipReader.scriptTolerated(QualifiedName("torch.jit.unsupported_tensor_ops", "execWrapper")))
    }
}
