import ArgumentParser
import CkptFormat
import CkptTensor

/// `ckpt scan FILE...`: what a security reviewer wants to know, without loading anything.
struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every global each file's pickles reference and give a verdict: tensor data only, references code, or malformed.",
        discussion: "No tensor data is read and nothing is imported or run. Exit status is 0 when every file holds tensor data only, 1 when any file references code or is malformed, 2 when a file cannot be read at all (missing, unreadable: said on stderr; the other files are still scanned).")

    @Argument(help: "Files to scan.")
    var files: [String]

    @Flag(name: .long, help: "Print a JSON report.")
    var json = false

    enum Verdict: String {
        case tensorDataOnly = "tensor data only"
        case referencesCode = "references code"
        case malformed
        case unreadable = "cannot be read"
    }

    struct Result {
        var file: String
        var format: String?
        var verdict: Verdict
        var globals: [QualifiedName] = []
        var disallowed: [QualifiedName] = []
        var detail: String?
    }

    static func scan(_ path: String) -> Result {
        do {
            // salvage: walk past disallowed globals so every one of them is listed; nothing is called
            let c = try CheckpointSource.read(path: path, options: UnpickleOptions(salvage: true))
            var r = Result(file: path, format: c.info.format.rawValue, verdict: .tensorDataOnly, globals: c.info.globals,
                           disallowed: c.info.globals.filter { !Allowlist.contains($0) })
            if !r.disallowed.isEmpty {
                r.verdict = .referencesCode
            } else if c.info.format == .torchscript {
                r.verdict = .referencesCode
                r.detail = "TorchScript archive: holds a program (code/), which ckpt never runs"
            }
            return r
        } catch let e as FormatError where e.kind == .io {
            return Result(file: path, format: nil, verdict: .unreadable, detail: e.description)
        } catch let e as FormatError {
            var r = Result(file: path, format: nil, verdict: e.kind == .refused ? .referencesCode : .malformed, detail: e.description)
            // not a container: torch.load(weights_only=False) would run the file's pickle whole
            if let g = PlainPickle.globals(path: path) {
                r.globals = g
                r.disallowed = g.filter { !Allowlist.contains($0) }
                if !r.disallowed.isEmpty { r.verdict = .referencesCode }
            }
            return r
        } catch {
            return Result(file: path, format: nil, verdict: .malformed, detail: "\(error)")
        }
    }

    func run() throws {
        // the reader's arena comes and goes per file: large arrays mapped, returned when freed
        CLI.returnLargeAllocations()
        let results = files.map(Scan.scan)
        if json {
            CLI.printJSON(.array(results.map { r in .object([
                ("file", .string(r.file)), ("format", r.format.map(JSONValue.string) ?? .null),
                ("verdict", .string(r.verdict.rawValue)),
                ("globals", .array(r.globals.map { .string($0.description) })),
                ("disallowed_globals", .array(r.disallowed.map { .string($0.description) })),
                ("detail", r.detail.map(JSONValue.string) ?? .null),
            ]) }))
        } else {
            for r in results {
                if r.verdict == .unreadable {
                    CLI.printError(r.detail ?? "\(r.file): cannot be read")
                    continue
                }
                print("\(r.file): \(r.verdict.rawValue)" + (r.format.map { " (\($0))" } ?? ""))
                for g in r.globals {
                    print("  \(Allowlist.contains(g) ? "ok  " : "CODE") \(g)")
                }
                if let d = r.detail { print("  \(d)") }
            }
        }
        if results.contains(where: { $0.verdict == .unreadable }) { throw ExitCode(2) }
        if results.contains(where: { $0.verdict != .tensorDataOnly }) { throw ExitCode(1) }
    }
}
