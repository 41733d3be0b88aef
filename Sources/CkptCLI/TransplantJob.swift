import ArgumentParser
import CkptData
import CkptFormat
import CkptKernels
import CkptSurgery
import CkptTensor
import CkptTrain
import CkptZoo
import Foundation

/// The target of a transplant: a zoo model or a template state dict.
enum TransplantTarget {
    case zoo(name: String, numClasses: Int)
    /// A state dict file and its tensors by key (the values uncovered keys keep).
    case template(path: String, values: [String: Tensor])

    var name: String {
        switch self {
        case let .zoo(name, n): return "\(name) (\(n) classes)"
        case let .template(path, _): return "template \(path)"
        }
    }
}

/// One transplant, from reading the source to writing the output: the command's glue over
/// `Planner`, `MatchPlan.apply`, `Zoo.initialValues` and `TransplantProof`.
struct TransplantJob {
    var located: LocatedStateDict
    var sourceArchitecture: ArchitectureGuess?
    var sourceModel: String?
    /// The class count of the source's head, when known.
    var sourceClasses: Int?
    var target: TransplantTarget
    var specs: [ParameterSpec]
    var options: TransplantOptions
    var rules: [TransplantRule]
    var proposals: [TransplantRule]
    var plan: MatchPlan

    /// Reads the source and the target and makes the plan.
    /// - Throws: `FormatError`, `SurgeryError`, `ZooError`, `ValidationError` for bad input.
    static func prepare(_ c: Transplant) throws -> TransplantJob {
        let checkpoint = try CLI.load(c.source, c.read)
        let located = try CLI.locateStateDict(checkpoint, key: c.key, file: c.source)
        let sourceState = located.stateDict
        guard !sourceState.isEmpty else {
            throw SurgeryError(.emptySource, "\(c.source): no tensors" + (located.rootPath.isEmpty ? "" : " under '\(located.rootPath)'"))
        }
        if let q = sourceState.first(where: { $0.tensor.dtype.isQuantized }) {
            // grafting int8 values into a float model would give torch tensors it cannot load
            throw SurgeryError(.mismatch, "\(c.source): '\(q.key)' is quantized (\(q.tensor.dtype.rawValue)); ckpt transplants float weights only (the float model this one was quantized from is the source to use)")
        }
        let guess = KeyAnalysis.guessArchitecture(sourceState.shapes)
        var sourceModel = c.fromModel
        var sourceClasses = guess?.numClasses
        if let m = sourceModel {
            _ = try Zoo.entry(named: m)
        } else if let g = guess, Zoo.names.contains(g.name) {
            sourceModel = g.name
        }

        // the target
        var options = TransplantOptions()
        options.inputChannelMode = InputChannelMode(rawValue: c.inChannelsMode) ?? .automatic
        let target: TransplantTarget
        var specs: [ParameterSpec]
        var recipeNote: String?
        let labels = c.keepClasses.count == 2 ? (try ClassLabels.read(contentsOf: c.keepClasses[0]), try ClassLabels.read(contentsOf: c.keepClasses[1])) : nil
        if let entry = try? Zoo.entry(named: c.into) {
            let n = try c.numClasses ?? labels?.1.count ?? inferClasses(entry.name, from: sourceState) ?? entry.defaultClassCount
            target = .zoo(name: entry.name, numClasses: n)
            specs = try Zoo.specification(entry.name, numClasses: n).parameterSpecs
            options.headKeys = Set(try Zoo.headKeys(entry.name, numClasses: n))
            if let recipe = entry.recipe, !c.noRecipe {
                if let s = sourceModel, s != recipe.source {
                    recipeNote = "recipe \(entry.name) <- \(recipe.source) not applied: the source is \(s)"
                } else {
                    options.recipe = try recipe.maps.map { try TransplantRule.map($0, origin: .recipe(entry.name)) }
                }
            }
        } else if FileManager.default.fileExists(atPath: c.into) {
            guard c.numClasses == nil else {
                throw ValidationError("--num-classes: a template's shapes are fixed by the template \(c.into)")
            }
            let t = KeyAnalysis.locateStateDict(try CLI.load(c.into, c.read)).stateDict
            guard !t.isEmpty else { throw SurgeryError(.emptySource, "\(c.into): the template holds no tensors") }
            let byKey = Dictionary(t.map { ($0.key, $0.tensor) }, uniquingKeysWith: { a, _ in a })
            target = .template(path: c.into, values: byKey)
            specs = t.map { ParameterSpec(key: $0.key, shape: $0.tensor.shape, dtype: $0.tensor.dtype,
                                          role: KeyAnalysis.role(of: $0.key, $0.tensor, tensorNamed: { byKey[$0] })) }
            options.headKeys = Set(TemplateInitialization.headKeys(specs))
        } else {
            throw ZooError.unknownModel(name: c.into, available: Zoo.names + ["(or a path to a state-dict file)"])
        }
        // a source the guess does not name, whose keys all sit in a zoo target as they are (the
        // seed's small CNN, a fine-tuned copy of the target): the same architecture
        if sourceModel == nil, case let .zoo(name, _) = target {
            let heads = Set(try Zoo.headKeys(name))
            let defaults = try Zoo.specification(name).parameterSpecs
            let fallback = try Zoo.entry(named: name).defaultClassCount
            if let n = ModelFitting.classCount(head: defaults.filter { heads.contains($0.key) }, in: sourceState) ?? Optional(fallback),
               let own = try? Zoo.specification(name, numClasses: n).parameterSpecs {
                let shapes = Dictionary(own.map { ($0.key, $0.shape) }, uniquingKeysWith: { a, _ in a })
                if sourceState.allSatisfy({ shapes[$0.key] == $0.tensor.shape }) {
                    sourceModel = name
                    sourceClasses = n
                }
            }
        }
        options.replaceHead = c.numClasses != nil
        options.inputConvolutionKey = specs.first { $0.shape.count == 4 }?.key
        if let channels = c.inChannels, let k = options.inputConvolutionKey, let i = specs.firstIndex(where: { $0.key == k }) {
            if case .template = target, specs[i].shape[1] != channels {
                throw ValidationError("--in-channels \(channels): the template's first convolution \(k) takes \(specs[i].shape[1])")
            }
            specs[i].shape[1] = channels
        }
        if let (old, new) = labels {
            options.keepClasses = (old, new)
            options.replaceHead = true
        }

        var rules = try c.maps.map { try TransplantRule.map($0) }
        rules += try c.renames.map { try TransplantRule.rename($0) }
        rules += try c.drops.map { try TransplantRule.drop($0) }
        var proposals: [TransplantRule] = []
        if c.auto {
            proposals = AutoMapper.propose(source: sourceState.shapes, target: specs, existing: rules + options.recipe)
            rules = proposals + rules
        }
        var plan = try Planner.plan(source: sourceState.shapes, target: specs, rules: rules, options: options)
        if let n = recipeNote { plan.notes.insert(n, at: 0) }
        if case .template = target {
            plan.keepsTargetValues = true
            plan.notes.append("template target: keys the source does not cover keep the template's values (as `model_dict.update(pretrained)` does)")
        }
        return TransplantJob(located: located, sourceArchitecture: guess, sourceModel: sourceModel, sourceClasses: sourceClasses, target: target, specs: specs,
                             options: options, rules: rules, proposals: proposals, plan: plan)
    }

    /// The class count the source's head has for `model`'s head keys, when it fits them.
    static func inferClasses(_ model: String, from source: StateDict) throws -> Int? {
        let specs = try Zoo.specification(model).parameterSpecs
        let heads = Set(try Zoo.headKeys(model))
        return ModelFitting.classCount(head: specs.filter { heads.contains($0.key) }, in: source)
    }

    /// Applies the plan, proves it, checks the gates, writes the output and the plan file.
    func run(_ c: Transplant) throws {
        let out = c.outputPath
        if c.auto, !c.json {
            print("--auto proposes:" + (proposals.isEmpty ? " nothing (keys already match, or no block has a match)" : ""))
            for r in proposals { print("  \(r.flag)    # confidence \(String(format: "%.2f", confidence(r)))") }
        }
        if c.dryRun {
            if c.json { CLI.printJSON(report(c, checks: [], casts: [], output: nil)) } else { printPlan(c, checks: [], casts: [], written: nil) }
            try gates(c)
            if let w = coverageWarning { CLI.printError("warning: " + w) }
            return
        }
        if !c.force, FileManager.default.fileExists(atPath: out) {
            throw ValidationError("\(out) exists; pass --force to overwrite it")
        }
        try gates(c)

        // the provenance hash reads the whole source: on the other core while the rest runs
        let digest = DigestTask(path: c.source)
        var clock = Date()
        func lap(_ name: String) {
            let now = Date()
            if ProcessInfo.processInfo.environment["CKPT_TIMING"] != nil {
                FileHandle.standardError.write(Data(String(format: "%@ %.3f s\n", name, now.timeIntervalSince(clock)).utf8))
            }
            clock = now
        }
        // the proof first, on the transplant as taken from the source (no fresh value made yet, so
        // memory holds one block at a time); a cast the user asked for is a separate, reported
        // step whose effect on the activations is shown beside it
        let dtype = OutputDType(rawValue: c.dtype) ?? .keep
        var checks: [BlockCheck] = []
        if !c.noVerify, let from = sourceModel, case let .zoo(name, n) = target {
            let classes = try sourceClasses ?? Zoo.entry(named: from).defaultClassCount
            let (taken, takenCasts) = try plan.apply(source: located.stateDict, initialValues: [:], dtype: .keep, takenOnly: true)
            checks = try TransplantProof.verify(plan: plan, source: located.stateDict, sourceModel: from, sourceClasses: classes,
                                                output: taken, targetModel: name, targetClasses: n, seed: c.seed)
            if dtype != .keep {
                let (cast, casts) = try plan.apply(source: located.stateDict, initialValues: [:], dtype: dtype, takenOnly: true)
                if casts.contains(where: \.isLossy) {
                    let after = try TransplantProof.verify(plan: plan, source: located.stateDict, sourceModel: from, sourceClasses: classes,
                                                           output: cast, targetModel: name, targetClasses: n, seed: c.seed)
                    for (i, a) in after.enumerated() where i < checks.count && checks[i].block == a.block {
                        checks[i].maxAbsDiffAfterCast = a.maxAbsDiff
                    }
                }
            }
            _ = takenCasts
        }
        lap("proof")
        let failed = checks.filter { !$0.passes(tolerance: TransplantProof.tolerance) }

        var casts: [CastReport] = []
        if failed.isEmpty {
            let needed = plan.entries.filter(\.needsInitialValue).map(\.spec)
            var initial: [String: Tensor] = [:]
            switch target {
            case let .zoo(name, n):
                initial = try Zoo.initialValues(name, numClasses: n, seed: c.seed, keys: needed.map(\.key))
                // a first conv widened by --in-channels is not the zoo's shape: PyTorch's conv default
                for spec in needed where initial[spec.key]?.shape != spec.shape {
                    initial[spec.key] = try TemplateInitialization.values(for: [spec], among: specs, seed: c.seed)[spec.key]
                }
            case let .template(_, own):
                // the template's own tensor where it fits (a widened first conv does not, and one
                // the user asked to re-initialise is not taken): PyTorch's layer defaults otherwise
                let kept = Set(plan.entries.filter { plan.keepsTargetValue($0) }.map(\.spec.key))
                var fresh: [ParameterSpec] = []
                for spec in needed {
                    if kept.contains(spec.key), let t = own[spec.key], t.shape == spec.shape, t.dtype == spec.dtype {
                        initial[spec.key] = t
                    } else {
                        fresh.append(spec)
                    }
                }
                initial.merge(try TemplateInitialization.values(for: fresh, among: specs, seed: c.seed)) { a, _ in a }
            }
            lap("initial values")
            let (state, reports) = try plan.apply(source: located.stateDict, initialValues: initial, dtype: dtype)
            casts = reports
            lap("apply")
            let root = Value.dict(PyDict(items: state.map { (.string($0.key), .tensor($0.tensor)) }, kind: .orderedDict))
            let progress = Progress("writing \(out)", total: 1)
            try CheckpointWriter.write(Checkpoint(root: root, info: FormatInfo(format: .zip)), to: out, forbidding: [c.source] + templatePath) {
                progress.update($0 * 100 / max($1, 1))
            }
            progress.finish()
            lap("write")
            var provenance = report(c, checks: checks, casts: casts, output: out)
            if case var .object(members) = provenance {
                members.insert(("source_sha256", .string(try digest.wait())), at: 1)
                provenance = .object(members)
            }
            try AtomicFileWriter.write(Array((provenance.serialized(pretty: true) + "\n").utf8), to: out + ".plan.json", forbidding: [c.source])
            lap("hash and plan file")
        }
        if c.json {
            CLI.printJSON(report(c, checks: checks, casts: casts, output: failed.isEmpty ? out : nil))
        } else {
            printPlan(c, checks: checks, casts: casts, written: failed.isEmpty ? out : nil)
        }
        if let w = coverageWarning { CLI.printError("warning: " + w) }
        if let f = failed.first {
            CLI.printError("\(c.source): transplanted block \(f.block) differs from \(f.source) by \(f.maxAbsDiff.map { String(format: "%.3g", $0) } ?? "?") (> \(TransplantProof.tolerance)); nothing written (--no-verify skips the proof)")
            throw ExitCode(1)
        }
    }

    /// A line for a plan that leaves most of the target's bytes to fresh or template values the
    /// user did not ask for (a `--rename` or `--map` typo, the wrong `--key`): the file is still
    /// written, as torch's non-strict load would be, but the user should look.
    var coverageWarning: String? {
        let total = plan.entries.reduce(0) { $0 + $1.spec.byteCount }
        let unasked = plan.unrequested
        let uncovered = unasked.reduce(0) { $0 + $1.spec.byteCount }
        guard total > 0, uncovered * 2 > total else { return nil }
        let pct = String(format: "%.0f", Double(total - uncovered) * 100 / Double(total))
        return "only \(pct)% of the target's bytes come from the source or were asked to be re-initialised "
            + "(\(CLI.plural(unasked.count, "tensor")) of \(plan.entries.count) missing or mismatched); "
            + "check --map, --rename and --key, or pass --strict to fail instead"
    }

    var templatePath: [String] {
        if case let .template(p, _) = target { return [p] }
        return []
    }

    /// `--strict` and `--require-coverage`: exit 1 before anything is written.
    func gates(_ c: Transplant) throws {
        if c.strict, let first = plan.unrequested.first {
            CLI.printError("\(c.source): --strict: \(CLI.plural(plan.unrequested.count, "target tensor")) not transplanted, first \(first.spec.key) (\(Self.actionText(first.action)))")
            throw ExitCode(1)
        }
        for gate in c.requireCoverage {
            let parts = gate.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let pct = Double(parts[1].replacingOccurrences(of: "%", with: "")), (0 ... 100).contains(pct) else {
                throw ValidationError("--require-coverage '\(gate)': expected PREFIX=PCT% (enc=100%)")
            }
            guard let cov = plan.coverage(ofPrefix: parts[0]) else {
                throw ValidationError("--require-coverage '\(gate)': no target key starts with '\(parts[0])'; blocks: \(plan.coverage.map(\.block).joined(separator: ", "))")
            }
            if cov.fraction * 100 + 1e-9 < pct {
                CLI.printError("\(c.source): --require-coverage \(gate): \(parts[0]) is covered \(String(format: "%.1f", cov.fraction * 100))% (\(cov.coveredTensors) of \(cov.tensors) tensors)")
                throw ExitCode(1)
            }
        }
    }

    func confidence(_ r: TransplantRule) -> Double {
        if case let .auto(c) = r.origin { return c }
        return 1
    }

    static func actionText(_ a: MatchPlan.Action) -> String {
        switch a {
        case let .copy(from): return "copied from \(from)"
        case let .adapt(from, how): return "adapted from \(from): \(how.text)"
        case .fill: return "filled with 0 (absent from the source, as torch fills it)"
        case let .reinitialize(r): return "re-initialised: \(r.text)"
        case .missing: return "missing from the source (fresh value)"
        case let .mismatch(from, shape): return "mismatched: source \(from) is \(CLI.shape(shape)) (fresh value)"
        }
    }
}

/// SHA-256 of a file computed on a background thread (the SHA extensions where the CPU has them).
final class DigestTask: @unchecked Sendable {
    private var result: Result<String, Error>?
    private let done = DispatchSemaphore(value: 0)

    init(path: String) {
        Thread.detachNewThread { [self] in
            result = Result { try SHA256.hexDigest(ofFile: path, blocks: CPUFeatures.sha256Blocks) }
            done.signal()
        }
    }

    /// The hex digest, once computed.
    /// - Throws: `FormatError` when the file could not be read.
    func wait() throws -> String {
        done.wait()
        done.signal()
        guard let r = result else { throw FormatError(.io, file: "", "digest missing") }
        return try r.get()
    }
}
