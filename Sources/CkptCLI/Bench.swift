import ArgumentParser
import CkptFormat
import CkptTensor
import Foundation

/// `ckpt bench …`: measurements the benchmarks compare with PyTorch.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure ckpt's speed (used by `make bench`).",
        subcommands: [BenchRead.self, BenchForward.self, BenchTrain.self, BenchData.self])
}

/// `ckpt bench read FILE`: open a checkpoint and copy every tensor into memory of its own,
/// as `torch.load` does, reporting throughput; also measures memcpy, the ceiling.
struct BenchRead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Read every tensor of FILE into memory and report the throughput.")

    @Argument(help: "Checkpoint to read.")
    var file: String

    @Option(name: .long, help: "Repetitions; the best is reported.")
    var iterations = 3

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    @Flag(name: .long, help: "Instead of copying, make every tensor resident through the file mapping (zero-copy, as torch.load(mmap=True) then touching every page).")
    var mapped = false

    @OptionGroup var read: ReadOptions

    func run() throws {
        try CLI.run {
            var best = Double.infinity
            var bytes = 0
            var tensors = 0
            for _ in 0 ..< max(1, iterations) {
                let start = Date()
                let c = try CLI.load(file, read)
                var copies: [ByteRegion] = []
                bytes = 0
                tensors = 0
                var touched = 0
                for (_, t) in c.tensors {
                    if mapped {
                        // resident in place: fault every page in (one call per tensor), read one byte a page
                        touched &+= try t.withContiguousBytes { b in
                            var acc = 0
                            var i = 0
                            while i < b.count { acc &+= Int(b[i]); i += 4096 }
                            return acc
                        }
                    } else {
                        let region = try ByteRegion.allocate(count: t.byteCount) { try t.copyContiguousBytes(into: $0) }
                        copies.append(region)
                    }
                    bytes += t.byteCount
                    tensors += 1
                }
                best = min(best, Date().timeIntervalSince(start))
                withExtendedLifetime(copies) {}
                if touched == 42 { print("") } // keeps the page reads from being optimised away
            }
            let memcpy = BenchRead.memcpyRate(bytes: max(bytes, 1 << 20))
            let rate = Double(bytes) / best
            if json {
                CLI.printJSON(.object([
                    ("file", .string(file)), ("mode", .string(mapped ? "mapped" : "copy")), ("tensors", .int(tensors)), ("bytes", .int(bytes)),
                    ("seconds", .double(best)), ("bytes_per_second", .double(rate)),
                    ("memcpy_bytes_per_second", .double(memcpy)),
                ]))
            } else {
                print(String(format: "%d tensors, %@ in %.3f s: %.2f GB/s (memcpy %.2f GB/s)", tensors, CLI.bytes(bytes), best, rate / 1e9, memcpy / 1e9))
            }
        }
    }

    /// Bytes per second memcpy reaches copying `bytes` between fresh buffers (best of 3).
    static func memcpyRate(bytes: Int) -> Double {
        let src = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { src.deallocate(); dst.deallocate() }
        memset(src, 1, bytes)
        memset(dst, 0, bytes)
        var best = Double.infinity
        for _ in 0 ..< 3 {
            let start = Date()
            memcpy(dst, src, bytes)
            best = min(best, Date().timeIntervalSince(start))
        }
        return Double(bytes) / best
    }
}
