import ArgumentParser
import CkptData
import CkptFormat
import CkptTrain
import Foundation

/// `ckpt predict`'s files: the images named on the command line, how they pair into samples, and
/// where segnet's masks go.
enum PredictInputs {
    /// The images of one list option, each with the name it keeps under `--output-mask DIR`.
    struct Collected {
        /// Image files, each folder expanded in place (sorted by path).
        var paths: [String] = []
        /// For each path: below its folder, the path under it; a file named directly, its name.
        var relative: [String] = []
        /// Entries of the folders left out.
        var issues: [FolderIssue] = []
    }

    /// The image files `inputs` name.
    /// - Throws: `DataError` naming an input that does not exist, or a folder without images.
    static func collect(_ inputs: [String]) throws -> Collected {
        var out = Collected()
        for input in inputs {
            let list = try ImageFileList.collect([input])
            var isDirectory: ObjCBool = false
            let folder = FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) && isDirectory.boolValue
            let base = input.hasSuffix("/") ? String(input.dropLast()) : input
            for path in list.paths {
                out.paths.append(path)
                out.relative.append(folder && path.hasPrefix(base + "/") ? String(path.dropFirst(base.count + 1)) : URL(fileURLWithPath: path).lastPathComponent)
            }
            out.issues += list.issues
        }
        return out
    }

    /// The files of each sample: one image each, or `--image` and `--image2` paired in order.
    /// - Throws: `ValidationError` when `--image2` is given without `--inputs pair` or the two
    ///   lists differ in length.
    static func samples(first: Collected, second: Collected, form: InputForm, model: String) throws -> [[String]] {
        guard form == .pair else {
            if !second.paths.isEmpty { throw ValidationError("--image2: only for segnet with --inputs pair (\(model) reads one image per sample)") }
            return first.paths.map { [$0] }
        }
        guard !second.paths.isEmpty else {
            throw ValidationError("--inputs pair: give x2's images with --image2 (or --inputs split: x1 and x2 from one image's red and green planes)")
        }
        guard first.paths.count == second.paths.count else {
            throw ValidationError("--inputs pair: --image gives \(CLI.plural(first.paths.count, "image")), --image2 \(second.paths.count); they pair one to one, in order")
        }
        return zip(first.paths, second.paths).map { [$0, $1] }
    }

    /// Where each sample's mask goes: `output` itself for one sample (unless it is a folder),
    /// else `output/<path of the first image below its folder, .png>`; nil without `output`.
    /// - Throws: `ValidationError` for two samples with one mask name, an existing file without
    ///   `force`, or a folder that cannot be made.
    static func maskPaths(_ output: String?, samples: [[String]], first: Collected, force: Bool, inputs: [String]) throws -> [String]? {
        guard let output else { return nil }
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory)
        var paths: [String]
        if samples.count == 1, !output.hasSuffix("/"), !(exists && isDirectory.boolValue) {
            paths = [output]
        } else {
            if exists, !isDirectory.boolValue {
                throw ValidationError("--output-mask: \(output) is a file; \(samples.count) masks need a folder")
            }
            let base = output.hasSuffix("/") ? String(output.dropLast()) : output
            paths = first.relative.map { r in
                let stem = r.lastIndex(of: ".").map { String(r[..<$0]) } ?? r
                return base + "/" + stem + ".png"
            }
            var seen: [String: Int] = [:]
            for (i, p) in paths.enumerated() {
                if let j = seen[p] {
                    throw ValidationError("--output-mask: \(first.paths[j]) and \(first.paths[i]) would both write \(p); give them separately")
                }
                seen[p] = i
            }
        }
        let inputSet = Set(inputs.map { URL(fileURLWithPath: $0).standardizedFileURL.path })
        for p in paths {
            if inputSet.contains(URL(fileURLWithPath: p).standardizedFileURL.path) {
                throw ValidationError("--output-mask: \(p) is an input of the run; write elsewhere")
            }
            if !force, FileManager.default.fileExists(atPath: p) {
                throw ValidationError("--output-mask: \(p) exists; pass --force to overwrite it")
            }
        }
        for folder in Set(paths.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path }) {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw ValidationError("--output-mask: cannot make the folder \(folder): \(error.localizedDescription)")
            }
        }
        return paths
    }

    /// Writes `mask` as an 8-bit grey PNG to a temporary name beside `path`, then renames it.
    /// - Throws: `FormatError(.io)` naming the file; `DataError` when libpng fails.
    static func write(_ mask: LabelMap, to path: String, forbidding inputs: [String]) throws {
        let bytes = try mask.pngBytes(name: path)
        try AtomicFileWriter.write(bytes, to: path, forbidding: inputs)
    }
}
