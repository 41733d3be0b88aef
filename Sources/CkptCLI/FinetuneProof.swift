import ArgumentParser
import CkptFormat
import CkptSurgery
import CkptTensor
import CkptTrain
import CkptZoo
import Foundation

/// The activation proof of the transplant that wrote a fine-tuning run's weights, run again from
/// the plan file it left beside them (`W.plan.json`): the same source, target and rules are
/// planned anew, and every transplanted block of the weights is run beside its source block.
enum TransplantReplay {
    /// Runs the proof of `planFile` on `weights`.
    /// - Returns: one check per block (empty when the source's architecture is not in the zoo,
    ///   so nothing can be run; the plan file then proves nothing and is not refused).
    /// - Throws: `FormatError` when the plan file cannot be read, names another model or its
    ///   source is gone; what `TransplantJob.prepare` and `TransplantProof.verify` throw.
    static func verify(planFile: String, weights: LocatedStateDict, model: String, numClasses: Int, read: ReadOptions) throws -> [BlockCheck] {
        guard let data = FileManager.default.contents(atPath: planFile), let text = String(data: data, encoding: .utf8) else {
            throw FormatError(.io, file: planFile, "cannot read the transplant's plan file")
        }
        let plan = try JSONValue.parse(text, source: JSONSource(file: planFile))
        guard let source = plan["source"]?.stringValue else { throw FormatError(.corrupt, file: planFile, "no 'source' (is it a transplant's plan?)") }
        guard let target = plan["target"], let targetModel = target["model"]?.stringValue,
              let targetClasses = target["num_classes"]?.numberValue?.intValue else {
            // a template target: no zoo model to run
            return []
        }
        let entry = try Zoo.entry(named: model)
        guard (try? Zoo.entry(named: targetModel))?.name == entry.name else {
            throw FormatError(.corrupt, file: planFile, "the transplant made these weights for \(targetModel), not \(entry.name); --no-verify skips the proof")
        }
        let sourcePath = locate(source, besides: planFile)
        guard FileManager.default.fileExists(atPath: sourcePath) else {
            throw FormatError(.io, file: source, "the transplant's source is not there to re-run its proof (\(planFile)); --no-verify skips the proof")
        }
        var args = [sourcePath, "--into", targetModel, "--num-classes", String(targetClasses), "-o", "/dev/null"]
        if let seed = plan["seed"]?.numberValue?.uint64Value { args += ["--seed", String(seed)] }
        if let root = plan["state_dict_root"]?.stringValue, !root.isEmpty { args += ["--key", root] }
        var usedRecipe = false
        for rule in plan["rules"]?.arrayValue ?? [] {
            guard let flag = rule["flag"]?.stringValue else { continue }
            if rule["origin"]?.stringValue?.hasPrefix("recipe") == true {
                usedRecipe = true
                continue
            }
            let parts = flag.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            var value = parts[1]
            if value.count >= 2, value.hasPrefix("'"), value.hasSuffix("'") { value = String(value.dropFirst().dropLast()) }
            args += [parts[0], value]
        }
        if entry.recipe != nil, !usedRecipe { args.append("--no-recipe") }
        if read.salvage { args.append("--salvage") }
        let command = try Transplant.parse(args)
        let job = try TransplantJob.prepare(command)
        guard let sourceModel = job.sourceModel else { return [] }
        let sourceClasses = try job.sourceClasses ?? Zoo.entry(named: sourceModel).defaultClassCount
        let specs = try Zoo.specification(entry.name, numClasses: numClasses).parameterSpecs
        let output = ModelFitting.stateDict(weights, for: specs.map(\.key))
        return try TransplantProof.verify(plan: job.plan, source: job.located.stateDict, sourceModel: sourceModel, sourceClasses: sourceClasses,
                                          output: output, targetModel: entry.name, targetClasses: targetClasses)
    }

    /// The source path as recorded, or relative to the plan file's folder when the transplant ran
    /// elsewhere.
    static func locate(_ recorded: String, besides planFile: String) -> String {
        if recorded.hasPrefix("/") || FileManager.default.fileExists(atPath: recorded) { return recorded }
        let dir = URL(fileURLWithPath: planFile).deletingLastPathComponent()
        return dir.appendingPathComponent(recorded).path
    }
}
