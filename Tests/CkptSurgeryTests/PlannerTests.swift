import CkptTensor
import Foundation
import XCTest
@testable import CkptSurgery

/// The planner on torchvision's own key lists (fixtures/zoo/keys.json, written by torch):
/// slices renumbered as `nn.Sequential(*features[A:B])`, moves, renames, drops, recipes, heads,
/// input convs, atomic modules, and every rule error.
final class PlannerTests: XCTestCase {
    /// keys.json's contract of `model`: keys, shapes, dtypes and roles in `state_dict()` order.
    static func specs(_ model: String) throws -> [ParameterSpec] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/zoo/keys.json")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let models = try XCTUnwrap(json["models"] as? [String: Any])
        let entry = try XCTUnwrap(models[model] as? [String: Any], "no \(model) in keys.json")
        let keys = try XCTUnwrap(entry["keys"] as? [[Any]])
        return try keys.map { k in
            ParameterSpec(key: try XCTUnwrap(k[0] as? String), shape: try XCTUnwrap(k[1] as? [Int]),
                          dtype: DType(rawValue: try XCTUnwrap(k[2] as? String)) ?? .float32,
                          role: (k[3] as? String) == "buffer" ? .buffer : .parameter)
        }
    }

    static func shapes(_ specs: [ParameterSpec]) -> [(key: String, shape: [Int])] { specs.map { ($0.key, $0.shape) } }

    static let segnetRecipe = ["features.3:7=enc1", "features.7:14=enc2", "features.14:27=enc3", "features.27:40=enc4", "features.40:=enc5"]

    func testSegNetRecipeCopiesTheWholeEncoderRenumberedAsSequentialDoes() throws {
        let vgg = try Self.specs("vgg19_bn"), segnet = try Self.specs("segnet")
        var options = TransplantOptions()
        options.recipe = try Self.segnetRecipe.map { try TransplantRule.map($0, origin: .recipe("segnet")) }
        let plan = try Planner.plan(source: Self.shapes(vgg), target: segnet, rules: [], options: options)
        let copies = Dictionary(uniqueKeysWithValues: plan.copied.map { ($0.spec.key, $0.sourceKey ?? "") })
        // features[3:7] = conv 3, bn 4, relu 5, pool 6 → enc1.0, enc1.1 (relu and pool keep slots 2 and 3)
        XCTAssertEqual(copies["enc1.0.weight"], "features.3.weight")
        XCTAssertEqual(copies["enc1.1.running_var"], "features.4.running_var")
        XCTAssertEqual(copies["enc2.3.weight"], "features.10.weight")
        XCTAssertEqual(copies["enc5.10.num_batches_tracked"], "features.50.num_batches_tracked")
        XCTAssertEqual(plan.copied.count, 105)
        for block in ["enc1", "enc2", "enc3", "enc4", "enc5"] {
            XCTAssertEqual(plan.coverage.first { $0.block == block }?.fraction, 1, block)
        }
        XCTAssertEqual(plan.coverage.first { $0.block == "input" }?.coveredTensors, 0)
        // the unused: the first conv triple and the classifier
        XCTAssertEqual(Set(plan.unused.map { StateDict.modulePath(of: $0.key) }),
                       ["features.0", "features.1", "classifier.0", "classifier.3", "classifier.6"])
        XCTAssertTrue(plan.unused.allSatisfy { $0.reason == MatchPlan.Unused.noSuchKey })
        XCTAssertEqual(plan.rules.map(\.originText), Array(repeating: "recipe segnet", count: 5))
    }

    func testUserMapReplacesTheRecipeRuleForItsBlockOnly() throws {
        var options = TransplantOptions()
        options.recipe = try Self.segnetRecipe.map { try TransplantRule.map($0, origin: .recipe("segnet")) }
        let plan = try Planner.plan(source: Self.shapes(try Self.specs("vgg19_bn")), target: try Self.specs("segnet"),
                                    rules: [try TransplantRule.map("3:7=enc1")], options: options)
        XCTAssertEqual(plan.rules.map(\.text), ["3:7=enc1", "features.7:14=enc2", "features.14:27=enc3", "features.27:40=enc4", "features.40:=enc5"])
        XCTAssertEqual(plan.rules.first?.origin, .user)
        XCTAssertEqual(plan.copied.count, 105)
        XCTAssertEqual(plan.entries.first { $0.spec.key == "enc1.0.weight" }?.rule, "3:7=enc1 (user)")
    }

    func testAnInputBlockMapAdaptsTheFirstConvolution() throws {
        let segnet = try Self.specs("segnet")
        var options = TransplantOptions()
        options.inputConvolutionKey = segnet.first { $0.shape.count == 4 }?.key
        let plan = try Planner.plan(source: Self.shapes(try Self.specs("vgg19_bn")), target: segnet,
                                    rules: [try TransplantRule.map("0:3=input")], options: options)
        XCTAssertEqual(plan.entries[0].action, .adapt(from: "features.0.weight", .inputChannels(from: 3, to: 2, mode: .repeat)))
        XCTAssertEqual(plan.entries[1].action, .copy(from: "features.0.bias"))
        XCTAssertEqual(plan.entries.first { $0.spec.key == "input.1.running_mean" }?.action, .copy(from: "features.1.running_mean"))
        // elsewhere a channel difference is a mismatch
        options.inputConvolutionKey = nil
        let strict = try Planner.plan(source: Self.shapes(try Self.specs("vgg19_bn")), target: segnet,
                                      rules: [try TransplantRule.map("0:3=input")], options: options)
        XCTAssertEqual(strict.entries[0].action, .mismatch(from: "features.0.weight", sourceShape: [64, 3, 3, 3]))
        // and the module is then taken whole or not at all: the bias is not left beside a fresh weight
        guard case .reinitialize(.atomic(module: "input.0", _)) = strict.entries[1].action else {
            return XCTFail("bias of a mismatched conv: \(strict.entries[1].action)")
        }
        XCTAssertTrue(strict.unused.contains { $0.key == "features.0.bias" })
    }

    func testHeadReplacementAndKeepClasses() throws {
        let source = Self.shapes(try Self.specs("resnet18"))
        var target = try Self.specs("resnet18")
        target[target.count - 2].shape = [5, 512]
        target[target.count - 1].shape = [5]
        var options = TransplantOptions()
        options.headKeys = ["fc.weight", "fc.bias"]
        // without asking: a mismatch, which --strict refuses
        let plain = try Planner.plan(source: source, target: target, rules: [], options: options)
        XCTAssertEqual(plain.mismatched.map(\.spec.key), ["fc.weight", "fc.bias"])
        XCTAssertEqual(plain.unrequested.count, 2)
        options.replaceHead = true
        let head = try Planner.plan(source: source, target: target, rules: [], options: options)
        XCTAssertEqual(head.reinitialized.map(\.spec.key), ["fc.weight", "fc.bias"])
        XCTAssertTrue(head.unrequested.isEmpty)
        XCTAssertEqual(head.unused.map(\.key), ["fc.weight", "fc.bias"])
        XCTAssertEqual(head.copied.count, target.count - 2)

        let old = (0 ..< 1000).map { "class\($0)" }
        options.keepClasses = (old, ["class7", "new", "class0", "class999", "other"])
        let kept = try Planner.plan(source: source, target: target, rules: [], options: options)
        XCTAssertEqual(kept.adapted.map(\.spec.key), ["fc.weight", "fc.bias"])
        XCTAssertEqual(kept.adapted.first?.action, .adapt(from: "fc.weight", .keepClasses(rows: [7, nil, 0, 999, nil])))

        options.keepClasses = (Array(old.prefix(10)), ["a", "b", "c", "d", "e"])
        XCTAssertThrowsError(try Planner.plan(source: source, target: target, rules: [], options: options)) { e in
            XCTAssertEqual((e as? SurgeryError)?.kind, .mismatch)
            XCTAssertTrue("\(e)".contains("10 old labels for a source head of 1000 classes"), "\(e)")
        }
    }

    func testKeepRowsCopiesKeptRowsAndKeepsFreshOnes() throws {
        let source: [Float] = [0, 0, 1, 1, 2, 2]  // three classes, rows of two
        let fresh: [Float] = [9, 9, 9, 9]
        XCTAssertEqual(try MatchPlan.keepRows([2, nil], source: source, fresh: fresh, rowSize: 2), [2, 2, 9, 9])
    }

    func testOldBatchNormWithoutCounterIsFilledNotMissing() throws {
        let target = try Self.specs("resnet18")
        let source = Self.shapes(target).filter { !$0.key.hasSuffix("num_batches_tracked") }
        let plan = try Planner.plan(source: source, target: target, rules: [])
        XCTAssertEqual(plan.filled.count, target.filter { $0.name == "num_batches_tracked" }.count)
        XCTAssertTrue(plan.missing.isEmpty)
        XCTAssertTrue(plan.isExact)
    }

    func testPartlyMatchingModuleIsReinitialisedWhole() throws {
        let target = try Self.specs("resnet18")
        let source = Self.shapes(target).filter { $0.key != "layer2.0.bn1.running_var" }
        let plan = try Planner.plan(source: source, target: target, rules: [])
        let bn = plan.entries.filter { $0.spec.modulePath == "layer2.0.bn1" }
        XCTAssertEqual(bn.count, 5)
        XCTAssertEqual(bn.filter { $0.action == .missing }.map(\.spec.key), ["layer2.0.bn1.running_var"])
        for e in bn where e.action != .missing {
            guard case let .reinitialize(.atomic(module, why)) = e.action else { return XCTFail("\(e.spec.key): \(e.action)") }
            XCTAssertEqual(module, "layer2.0.bn1")
            XCTAssertTrue(why.contains("running_var is missing"), why)
        }
        XCTAssertEqual(plan.unrequested.count, 5)
        XCTAssertEqual(plan.unused.filter { $0.key.hasPrefix("layer2.0.bn1.") }.count, 4)
    }

    func testRenameDropAndMoveRules() throws {
        let resnet = try Self.specs("resnet18")
        // a checkpoint whose stages are named stage1…stage4 and whose head is called classifier
        let source = Self.shapes(resnet).map { (key: $0.key.replacingOccurrences(of: "layer", with: "stage").replacingOccurrences(of: "fc.", with: "classifier."), shape: $0.shape) }
        let plan = try Planner.plan(source: source, target: resnet, rules: [
            try TransplantRule.rename("^stage(\\d)=layer$1"), try TransplantRule.map("classifier=fc"), try TransplantRule.drop("^bn1\\."),
        ])
        XCTAssertEqual(plan.copied.count, resnet.count - 5)
        XCTAssertEqual(plan.entries.first { $0.spec.key == "layer3.1.conv2.weight" }?.action, .copy(from: "stage3.1.conv2.weight"))
        XCTAssertEqual(plan.entries.first { $0.spec.key == "fc.bias" }?.action, .copy(from: "classifier.bias"))
        XCTAssertEqual(plan.missing.map(\.spec.key).filter { $0.hasPrefix("bn1.") }.count, 5)
        XCTAssertTrue(plan.unused.allSatisfy { $0.reason.hasPrefix("dropped by ^bn1") || $0.reason.hasPrefix("dropped by '^bn1") || $0.key.hasPrefix("bn1.") })
        // a Python-style group reference works too
        let python = try Planner.plan(source: source, target: resnet, rules: [try TransplantRule.rename("^stage(\\d)=layer\\1")])
        XCTAssertEqual(python.entries.first { $0.spec.key == "layer4.0.downsample.0.weight" }?.action, .copy(from: "stage4.0.downsample.0.weight"))
    }

    func testRuleErrorsNameTheRuleAndWhatExists() throws {
        let vgg = Self.shapes(try Self.specs("vgg19_bn")), segnet = try Self.specs("segnet")
        func error(_ rules: [String]) -> SurgeryError? {
            do {
                _ = try Planner.plan(source: vgg, target: segnet, rules: try rules.map { try TransplantRule.map($0) })
                return nil
            } catch {
                return error as? SurgeryError
            }
        }
        let range = error(["60:70=enc1"])
        XCTAssertEqual(range?.kind, .noSuchBlock)
        XCTAssertEqual(range?.message, "--map 60:70=enc1: slice out of range: features has tensors at indices 0…50")
        let overlap = error(["3:7=enc1", "features.5:14=enc2"])
        XCTAssertEqual(overlap?.kind, .conflict)
        XCTAssertEqual(overlap?.message, "overlapping maps: 3:7=enc1 and features.5:14=enc2 take the same source layers")
        let block = error(["3:7=encoder1"])
        XCTAssertEqual(block?.message, "--map 3:7=encoder1: the target has no block 'encoder1'; its blocks: input, enc1, enc2, enc3, enc4, enc5, dec5, dec4, dec3, dec2, dec1")
        let module = error(["backbone=enc1"])
        XCTAssertEqual(module?.message, "--map backbone=enc1: the source has no module 'backbone'; its modules: features, classifier")
        XCTAssertThrowsError(try TransplantRule.map("3:7")) { XCTAssertEqual(($0 as? SurgeryError)?.kind, .badRule) }
        XCTAssertThrowsError(try TransplantRule.map("7:3=enc1")) { XCTAssertEqual(($0 as? SurgeryError)?.kind, .badRule) }
        XCTAssertThrowsError(try TransplantRule.rename("(=x")) { XCTAssertEqual(($0 as? SurgeryError)?.kind, .badRule) }
        // two rules writing one target key
        XCTAssertThrowsError(try Planner.plan(source: vgg, target: segnet, rules: [
            try TransplantRule.map("3:7=enc1"), try TransplantRule.rename("^features\\.7\\.=enc1.0."),
        ])) { e in
            XCTAssertEqual((e as? SurgeryError)?.kind, .conflict, "\(e)")
            XCTAssertTrue("\(e)".hasPrefix("two rules write target key enc1.0.weight: "), "\(e)")
        }
    }

    func testRuleParsing() throws {
        XCTAssertEqual(try TransplantRule.map("40:=enc5").action, .slice(container: nil, start: 40, end: nil, target: "enc5"))
        XCTAssertEqual(try TransplantRule.map("features.3:7=enc1").action, .slice(container: "features", start: 3, end: 7, target: "enc1"))
        XCTAssertEqual(try TransplantRule.map("classifier.0=fc1").action, .move(source: "classifier.0", target: "fc1"))
        XCTAssertEqual(try TransplantRule.map("features.3:7=enc1").flag, "--map features.3:7=enc1")
    }

    func testAutoFindsTheSegNetEncoderSlices() throws {
        let rules = AutoMapper.propose(source: Self.shapes(try Self.specs("vgg19_bn")), target: try Self.specs("segnet"))
        XCTAssertEqual(rules.map(\.text), ["features.3:7=enc1", "features.7:14=enc2", "features.14:27=enc3", "features.27:40=enc4", "features.40:=enc5"])
        XCTAssertTrue(rules.allSatisfy { $0.origin == .auto(confidence: 1) })
    }

    func testAutoFindsRenamedResNetBlocks() throws {
        let resnet = try Self.specs("resnet18")
        // stem/stage names, as a user's own module might call them
        let renamed = resnet.map { s -> ParameterSpec in
            var t = s
            t.key = s.key.replacingOccurrences(of: "layer", with: "stage")
                .replacingOccurrences(of: "conv1.", with: s.key.hasPrefix("conv1.") ? "stem.0." : "conv1.")
            if s.key.hasPrefix("bn1.") { t.key = "stem.1." + s.key.dropFirst(4) }
            if s.key.hasPrefix("fc.") { t.key = "head." + s.key.dropFirst(3); t.shape[0] = 5 }
            return t
        }
        let rules = AutoMapper.propose(source: Self.shapes(resnet), target: renamed)
        XCTAssertEqual(Set(rules.map(\.text)), ["conv1=stem.0", "bn1=stem.1", "layer1=stage1", "layer2=stage2", "layer3=stage3", "layer4=stage4"])
        let plan = try Planner.plan(source: Self.shapes(resnet), target: renamed, rules: rules)
        XCTAssertEqual(plan.copied.count, resnet.count - 2)
        XCTAssertEqual(plan.missing.map(\.spec.key), ["head.weight", "head.bias"])
    }
}
