import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// Files users meet every day (fixtures/realworld, written with real torch, omegaconf and
/// Lightning by fixtures/realworld/generate.py): what the commands say about them.
final class RealWorldCommandTests: XCTestCase {
    func ckpt(_ args: String...) throws -> CkptRun { try RunCkpt.run(args) }
    let files = "fixtures/realworld/files/"

    /// `convert --state-dict` lists what it leaves out, and only that: nothing for a plain state
    /// dict (it listed every weight it kept), the sparse entry of a state dict, the siblings of a
    /// nested one.
    func testStateDictConvertListsOnlyWhatItDrops() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-drop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out.pth").path
        let plain = try ckpt("convert", "fixtures/valid/cnn.pth", out, "--state-dict")
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stdout.contains("kept: the state dict at the root"), plain.stdout)
        XCTAssertFalse(plain.stdout.contains("dropped"), plain.stdout)
        let sparse = try ckpt("convert", "fixtures/sparse/files/coo_state_dict.pth", out, "--state-dict")
        XCTAssertTrue(sparse.stdout.contains("dropped: adj\n"), sparse.stdout)
        let nested = try ckpt("convert", "fixtures/valid/checkpoint.pth", out, "--state-dict")
        XCTAssertTrue(nested.stdout.contains("kept: the state dict at 'model'\ndropped: epoch, optimizer, best_acc, arch, note"), nested.stdout)
    }

    func testLightningCheckpointIsRecognisedAndItsWeightsPulledOut() throws {
        let r = try ckpt("inspect", files + "lightning_shaped.ckpt")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("state dict    'state_dict', wrapper prefix 'model.'"), r.stdout)
        XCTAssertTrue(r.stdout.contains("checkpoint    PyTorch Lightning"), r.stdout)
        // top-level values first
        let values = r.stdout.components(separatedBy: "other values\n").last ?? ""
        XCTAssertTrue(values.hasPrefix("  epoch = "), values)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-rw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("model.safetensors").path
        let c = try ckpt("convert", files + "lightning_shaped.ckpt", out, "--state-dict")
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertTrue(c.stdout.contains("kept: the state dict at 'state_dict' without 'model.'"), c.stdout)
        XCTAssertTrue(c.stdout.contains("dropped: epoch, global_step, pytorch-lightning_version, loops, callbacks, optimizer_states"), c.stdout)
        let source = try CheckpointReader.read(path: RunCkpt.root.appendingPathComponent(files + "lightning_shaped.ckpt").path)
        let expected = source.tensors.filter { $0.path.hasPrefix("state_dict.model.") }
        let written = try CheckpointReader.read(path: out).tensors
        XCTAssertEqual(Set(written.map(\.path)), Set(expected.map { String($0.path.dropFirst("state_dict.model.".count)) }))
        let byName = Dictionary(uniqueKeysWithValues: written.map { ($0.path, $0.tensor) })
        for (p, t) in expected {
            XCTAssertEqual(try byName[String(p.dropFirst("state_dict.model.".count))]?.contiguousBytes(), try t.contiguousBytes(), p)
        }
        // --key picks a dict by path
        let k = try ckpt("convert", files + "train_epoch10.pth", dir.appendingPathComponent("k.pth").path, "--key", "model", "--json")
        XCTAssertEqual(k.status, 0, k.stderr)
        XCTAssertEqual(try JSONValue.parse(k.stdout)["state_dict_root"], .string("model"))
    }

    func testOmegaConfHyperParametersAreRefusedWithAHintAndReadUnderSalvage() throws {
        let r = try ckpt("inspect", files + "lightning_omegaconf.ckpt")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderrLines.count, 1)
        XCTAssertTrue(r.stderr.contains("global 'omegaconf.dictconfig.DictConfig' is not allowed (an OmegaConf/Hydra config"), r.stderr)
        XCTAssertTrue(r.stderr.contains("--salvage"), r.stderr)
        let s = try ckpt("inspect", "--salvage", "--json", files + "lightning_omegaconf.ckpt")
        XCTAssertEqual(s.status, 0, s.stderr)
        let refs = try JSONValue.parse(s.stdout)["values"]?.arrayValue?.filter { $0["type"] == .string("reference") } ?? []
        XCTAssertFalse(refs.isEmpty, "OmegaConf nodes point back at their parents")
        let scan = try ckpt("scan", files + "lightning_omegaconf.ckpt")
        XCTAssertEqual(scan.status, 1)
        XCTAssertTrue(scan.stdout.contains("references code"), scan.stdout)
        XCTAssertTrue(scan.stdout.contains("CODE omegaconf.dictconfig.DictConfig"), scan.stdout)
    }

    func testReferenceCyclesAreShownNotWalked() throws {
        let r = try ckpt("inspect", files + "cycle_dict_self.pth")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("self = <reference cycle to (root)>"), r.stdout)
        let nested = try ckpt("inspect", "--json", files + "cycle_nested.pth")
        XCTAssertEqual(nested.status, 0, nested.stderr)
        let refs = try JSONValue.parse(nested.stdout)["values"]?.arrayValue?.filter { $0["type"] == .string("reference") }
        XCTAssertEqual(refs?.isEmpty, false)
    }

    func testGPUSavedStoragesSayWhereTheyWereSaved() throws {
        let r = try ckpt("inspect", files + "gpu_cuda7.pth")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("saved on      cuda:7 ("), r.stdout)
        XCTAssertTrue(r.stdout.contains("map_location"), r.stdout)
        let j = try JSONValue.parse(try ckpt("inspect", "--json", files + "gpu_cuda0.pth").stdout)
        XCTAssertEqual(j["tensors"]?.arrayValue?.first?["device"], .string("cuda:0"))
        XCTAssertEqual(j["needs_map_location"], .bool(true))
        let cpu = try JSONValue.parse(try ckpt("inspect", "--json", files + "py2_latin1.pth").stdout)
        XCTAssertEqual(cpu["needs_map_location"], .bool(false))
    }

    func testAPipeOrADeviceIsRefusedWithoutWaiting() throws {
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-fifo-\(UUID().uuidString).pth").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        defer { unlink(fifo) }
        // no writer ever opens the FIFO: a blocking open would wait until the timeout kills it (124)
        for command in ["inspect", "scan"] {
            let r = try RunCkpt.run([command, fifo], under: "true", seconds: 20)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains("is a pipe (FIFO)"), r.stderr)
        }
        let device = try RunCkpt.run(["inspect", "/dev/zero"], under: "true", seconds: 20)
        XCTAssertEqual(device.status, 2, device.stderr)
        XCTAssertTrue(device.stderr.contains("/dev/zero: is a device"), device.stderr)
    }

    func testQuantizationParametersAndIntegerTensorsAreBuffers() throws {
        let j = try JSONValue.parse(try ckpt("inspect", "--json", "fixtures/quantized/files/qmodel_per_tensor.pth").stdout)
        let kinds = Dictionary(uniqueKeysWithValues: (j["tensors"]?.arrayValue ?? []).compactMap { t in
            t["name"]?.stringValue.map { ($0, t["kind"]?.stringValue ?? "") } })
        XCTAssertEqual(kinds["quant.scale"], "buffer")
        XCTAssertEqual(kinds["quant.zero_point"], "buffer")
        XCTAssertEqual(kinds["conv.scale"], "buffer")
        XCTAssertEqual(kinds["fc.zero_point"], "buffer")
        XCTAssertEqual(kinds["conv.weight"], "parameter")
        XCTAssertEqual(kinds["conv.bias"], "parameter")
    }

    func testPython2FilesSayWhatTorchDoes() throws {
        let latin1 = try ckpt("inspect", files + "py2_latin1.pth")
        XCTAssertEqual(latin1.status, 0, latin1.stderr)
        XCTAssertTrue(latin1.stdout.contains("weights_only  no (Python 2 str that is not UTF-8"), latin1.stdout)
        let binstring = try ckpt("inspect", files + "py2_binstring.pth")
        XCTAssertTrue(binstring.stdout.contains("weights_only  no (opcode BINSTRING)"), binstring.stdout)
        XCTAssertEqual(try ckpt("inspect", files + "py2_torch041.pth").status, 0)
    }

    func testDiffComparesOtherValuesToo() throws {
        let r = try ckpt("diff", files + "train_epoch10.pth", files + "train_epoch20.pth")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("value: epoch: 10 -> 20"), r.stdout)
        XCTAssertTrue(r.stdout.contains("value: lr: 0.1 -> 0.01"), r.stdout)
        XCTAssertTrue(r.stdout.hasSuffix("0 of 15 common tensors differ, 7 other values differ\n"), r.stdout)
        let tensors = try ckpt("diff", "--tensors-only", files + "train_epoch10.pth", files + "train_epoch20.pth")
        XCTAssertEqual(tensors.status, 0, tensors.stdout)
        XCTAssertEqual(tensors.stdout, "equal: 15 tensors (bit-identical)\n")
    }

    func testDiffRelativeToleranceFollowsAllclose() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-rtol-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ v: [Float], _ name: String) throws -> String {
            let p = dir.appendingPathComponent(name).path
            try CheckpointWriter.write(Checkpoint(root: .dict(PyDict(items: [(.string("w"), .tensor(try Tensor(float32: v, shape: [v.count])))])),
                                                  info: FormatInfo(format: .zip)), to: p)
            return p
        }
        let a = try write([1000, 0.001], "a.pth"), b = try write([1000.5, 0.001], "b.pth")
        XCTAssertEqual(try ckpt("diff", a, b, "--rtol", "1e-3").status, 0)  // 0.5 <= 1e-3 * 1000.5
        XCTAssertEqual(try ckpt("diff", a, b, "--rtol", "1e-4").status, 1)
        XCTAssertEqual(try ckpt("diff", a, b, "--atol", "0.4").status, 1)
        XCTAssertEqual(try ckpt("diff", a, b, "--atol", "0.4", "--rtol", "1e-4").status, 0)  // 0.5 <= 0.4 + 0.10005
    }

    func testExitCodesAndSuggestions() throws {
        let scan = try ckpt("scan", "/nonexistent/x.pth", "fixtures/valid/cnn.pth")
        XCTAssertEqual(scan.status, 2)
        XCTAssertEqual(scan.stderrLines, ["ckpt: /nonexistent/x.pth: No such file or directory"])
        XCTAssertTrue(scan.stdout.hasPrefix("fixtures/valid/cnn.pth: tensor data only"), scan.stdout)
        let typo = try ckpt("inpsect", "fixtures/valid/cnn.pth")
        XCTAssertEqual(typo.status, 64)
        XCTAssertTrue(typo.stderr.hasPrefix("ckpt: unknown subcommand 'inpsect'; did you mean 'inspect'?"), typo.stderr)
        let model = try ckpt("summary", "ResNet18")
        XCTAssertEqual(model.status, 0, model.stderr)
        let stats = try ckpt("inspect", "--tree", "--stats", "fixtures/valid/cnn.pth")
        XCTAssertEqual(stats.status, 0, stats.stderr)
        XCTAssertTrue(stats.stdout.contains("key") && stats.stdout.contains("mean") && stats.stdout.contains("std"), stats.stdout)
    }

    /// A dataset split saved with torch.save (`{'train': [indices], ...}`) and a scheduler's state
    /// (`lr_lambdas: [{}, {}]`): long runs of numbers are one value, listed whole in `--json`, and
    /// every value is shown or counted — none dropped silently.
    func testLongListsAndEmptyContainersAreShownWhole() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-values-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = (0 ..< 12_345).map { Value.int(($0 * 7_919) % 12_345) }
        let valid = (0 ..< 100).map { Value.float(Double($0) / 8) }
        let many = (0 ..< 11_000).map { Value.dict(PyDict(items: [(.string("i"), .int($0))], kind: .dict)) }
        let root = Value.dict(PyDict(items: [
            (.string("train"), .list(train)), (.string("valid"), .tuple(valid)),
            (.string("lr_lambdas"), .list([.dict(PyDict(items: [], kind: .dict)), .dict(PyDict(items: [], kind: .dict))])),
            (.string("many"), .list(many)), (.string("epoch"), .int(3)),
        ], kind: .dict))
        let path = dir.appendingPathComponent("split.pt").path
        try CheckpointWriter.write(Checkpoint(root: root, info: FormatInfo(format: .zip)), to: path)

        let r = try ckpt("inspect", path)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("  train = [0, 7919, 3493, 11412, 6986, 2560, …, 4426] (12,345 items)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("  lr_lambdas.0 = {}\n  lr_lambdas.1 = {}"), r.stdout)
        XCTAssertTrue(r.stdout.contains("values past the first 10,000, not listed"), r.stdout)

        let j = try JSONValue.parse(try ckpt("inspect", path, "--json").stdout)
        let values = try XCTUnwrap(j["values"]?.arrayValue)
        let listed = try XCTUnwrap(values.first { $0["path"] == .string("train") })
        XCTAssertEqual(listed["items"]?.numberValue?.intValue, 12_345)
        XCTAssertEqual(listed["value"]?.arrayValue?.compactMap { $0.numberValue?.intValue }, train.compactMap(\.intValue))
        XCTAssertEqual(values.first { $0["path"] == .string("valid") }?["items"]?.numberValue?.intValue, 100)
        // epoch, train, valid, two empty dicts, then "many.N.i" up to the cap; the rest counted
        XCTAssertEqual(values.count, 10_000)
        XCTAssertEqual(j["values_not_listed"]?.numberValue?.intValue, 11_000 + 5 - 10_000)
    }
}
