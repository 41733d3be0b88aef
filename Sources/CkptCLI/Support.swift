import ArgumentParser
import CkptFormat
import CkptKernels
import CkptSurgery
import CkptTensor
import Foundation

/// Flags every reading command shares.
struct ReadOptions: ParsableArguments {
    @Flag(name: .long, help: "Keep objects of classes outside the allowlist (a pickled nn.Module, argparse.Namespace) as inert nodes instead of refusing the file. Nothing is ever imported or run.")
    var salvage = false

    var unpickle: UnpickleOptions { UnpickleOptions(salvage: salvage) }
}

/// Output helpers: errors on stderr as one line, exit codes, numbers for people.
enum CLI {
    /// Writes `line` to standard error.
    static func printError(_ line: String) {
        FileHandle.standardError.write(Data(("ckpt: " + line + "\n").utf8))
    }

    /// Runs `body`, turning any library error into one line on stderr and exit code `code`.
    static func run(errorCode: Int32 = 2, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as ExitCode {
            throw e
        } catch let e as FormatError {
            printError(e.description)
            throw ExitCode(errorCode)
        } catch let e as CleanExit {
            throw e
        } catch {
            printError("\(error)")
            throw ExitCode(errorCode)
        }
    }

    /// Makes every allocation of 1 MiB and more a mapping of its own, returned to the system when
    /// freed. glibc otherwise raises that threshold after the first large free, and blocks the
    /// proof frees one after another stay resident (peak memory is part of transplant's contract).
    static func returnLargeAllocations() {
        mallopt([(-3, 1 << 20)])  // M_MMAP_THRESHOLD
    }

    /// Keeps freed memory in the process for the next allocation: no mapping of its own for a large
    /// block, no trimming of the heap. A training step frees and allocates the same few hundred MB
    /// every step, and each fresh page costs a fault and a zeroing (resnet18 at batch 16: ~100,000
    /// faults a step otherwise, with ~50 MB more peak resident memory this way).
    static func reuseFreedMemory() {
        mallopt([(-4, 0), (-1, Int32.max)])  // M_MMAP_MAX, M_TRIM_THRESHOLD
    }

    /// glibc's `mallopt(parameter, value)` for each pair, in order; nothing elsewhere. It is in
    /// <malloc.h>, which the Glibc module does not export, hence the lookup (and the raw parameter
    /// numbers).
    private static func mallopt(_ settings: [(Int32, Int32)]) {
        #if canImport(Glibc)
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let f = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        for (parameter, value) in settings { _ = unsafeBitCast(f, to: Mallopt.self)(parameter, value) }
        #endif
    }

    /// Has OpenBLAS take its work buffers now, before a model runs: a memory limit too low for
    /// them is one line and exit 2, never OpenBLAS retrying a failed allocation forever.
    /// - Throws: `GemmError.workspace` (printed by `run` as one line).
    static func prepareKernels() throws {
        try Gemm.prepare()
    }

    /// Reads a checkpoint, mapping I/O errors to one line.
    static func load(_ path: String, _ options: ReadOptions) throws -> Checkpoint {
        try CheckpointSource.read(path: path, options: options.unpickle)
    }

    /// The state dict inside `checkpoint`: under the dotted `key` when given (none there is
    /// `SurgeryError.emptySource` naming `file`), else where `KeyAnalysis` finds it.
    static func locateStateDict(_ checkpoint: Checkpoint, key: String?, file: String) throws -> LocatedStateDict {
        guard let key else { return KeyAnalysis.locateStateDict(checkpoint) }
        guard let located = KeyAnalysis.locateStateDict(checkpoint, at: key) else {
            throw SurgeryError(.emptySource, "\(file): no tensors under '\(key)'")
        }
        return located
    }

    /// `11,689,512`.
    static func grouped(_ n: Int) -> String {
        let s = String(n.magnitude)
        var out = ""
        for (i, c) in s.enumerated() {
            if i > 0, (s.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// `1 tensor`, `1,024 tensors`.
    static func plural(_ n: Int, _ noun: String) -> String { "\(grouped(n)) \(noun)\(n == 1 ? "" : "s")" }

    /// `44.6 MiB`, `160 B`.
    static func bytes(_ n: Int) -> String {
        if n < 1024 { return "\(n) B" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var v = Double(n) / 1024
        var u = 0
        while v >= 1024, u < units.count - 1 { v /= 1024; u += 1 }
        return String(format: "%.1f %@", v, units[u])
    }

    /// `[64, 3, 7, 7]`.
    static func shape(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }

    /// A number as Python's repr would print it, short.
    static func number(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == d.rounded(), abs(d) < 1e15 { return String(format: "%.1f", d) }
        return String(format: "%.6g", d)
    }

    /// Left-aligned table with two spaces between columns; columns in `right` align right.
    static func table(_ header: [String], _ rows: [[String]], right: Set<Int> = []) -> String {
        var out = ""
        appendTable(to: &out, header, rowCount: rows.count, right: right) { rows[$0] }
        return out
    }

    /// Appends the table of `rowCount` rows to `out`, the cells of row `i` given by `row(i)`, which
    /// is called twice a row (once for the widths, once to write): no row of cells is kept, and
    /// the table is written once, into the caller's string (300,000 rows of `inspect`).
    /// `afterRow`, when given, may take what `out` holds so far after each row (to write it).
    static func appendTable(to out: inout String, _ header: [String], rowCount: Int, right: Set<Int> = [], _ row: (Int) -> [String],
                            afterRow: ((inout String) -> Void)? = nil) {
        var widths = header.map(\.count)
        for r in 0 ..< rowCount { for (i, c) in row(r).enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) {
            for (i, c) in cells.enumerated() {
                if i > 0 { out += "  " }
                let pad = String(repeating: " ", count: max(0, widths[i] - c.count))
                out += right.contains(i) ? pad + c : (i == cells.count - 1 ? c : c + pad)
            }
        }
        line(header)
        for r in 0 ..< rowCount {
            out += "\n"
            line(row(r))
            afterRow?(&out)
        }
    }

    /// Prints a JSON value to stdout.
    static func printJSON(_ v: JSONValue) {
        print(v.serialized(pretty: true))
    }

    /// A non-tensor value as a short Python-like literal.
    static func literal(_ v: Value) -> String {
        switch v {
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .bigInt(s): return s
        case let .float(f): return number(f)
        case let .complex(r, i): return "(\(number(r))+\(number(i))j)"
        case let .string(s): return "'" + (s.count > 60 ? String(s.prefix(57)) + "..." : s) + "'"
        case let .bytes(b): return "b'<\(b.count) bytes>'"
        case let .dtype(d): return "torch." + d.rawValue
        case let .device(d): return "device('\(d)')"
        case let .global(g): return g.description
        case let .object(o): return "<\(o.global) object (inert)>"
        case .storage: return "<storage>"
        case let .list(a): return a.isEmpty ? "[]" : "[\(a.count) items]"
        case let .tuple(a): return a.isEmpty ? "()" : "(\(a.count) items)"
        case let .set(a): return a.isEmpty ? "set()" : "{\(a.count) items}"
        case let .dict(d): return d.items.isEmpty ? "{}" : "{\(d.items.count) items}"
        case .tensor: return "<tensor>"
        case let .sparse(t): return "<\(t.summary)>"
        case let .meta(t): return "<\(t.summary), no data>"
        case let .reference(p): return "<reference cycle to \(p.isEmpty ? "(root)" : p)>"
        }
    }

    /// The JSON form of a leaf value.
    static func json(_ v: Value) -> JSONValue {
        switch v {
        case .none: return .null
        case let .bool(b): return .bool(b)
        case let .int(i): return .int(i)
        case let .float(f): return .double(f)
        case let .string(s): return .string(s)
        default: return .string(literal(v))
        }
    }
}

/// A progress line on stderr, shown only when stderr is a terminal.
final class Progress {
    private let label: String
    private let total: Int
    private let enabled: Bool
    private var last = Date.distantPast

    init(_ label: String, total: Int) {
        self.label = label
        self.total = max(total, 1)
        enabled = isatty(2) != 0
    }

    func update(_ done: Int) {
        guard enabled, Date().timeIntervalSince(last) > 0.1 else { return }
        last = Date()
        let pct = Int(Double(done) / Double(total) * 100)
        FileHandle.standardError.write(Data("\r\(label) \(pct)%".utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
