import CkptFormat
import CkptTensor

/// Budgets far below the CLI's: each input stays well inside libFuzzer's timeout in the
/// sanitizer build (the budgets' own logic is the same at any size).
func fuzzBudgets(salvage: Bool) -> UnpickleOptions {
    var options = UnpickleOptions(salvage: salvage)
    options.maxExpandedValues = 50_000
    options.maxObjects = 2_000_000
    options.maxInflatedRecordSize = 64 << 20
    return options
}

/// Feeds one input to every reader, strict and salvage, and reads every tensor it finds; then
/// to the DCP `.metadata` decoder. Any error is fine; a crash, a hang or an unbounded allocation
/// is a finding.
func readEverything(_ bytes: UnsafeRawBufferPointer) {
    let region = ByteRegion(copying: bytes)
    _ = try? DistributedCheckpointReader.entryNames(metadata: UnsafeRawBufferPointer(start: region.base, count: region.count),
                                                    file: "fuzz", budgets: fuzzBudgets(salvage: false))
    for salvage in [false, true] {
        let options = fuzzBudgets(salvage: salvage)
        guard let c = try? CheckpointReader.read(region: region, file: "fuzz", options: options) else { continue }
        for (_, t) in c.tensors {
            _ = try? t.withContiguousBytes { $0.count }
            _ = try? TensorStats.compute(t)
        }
        for (_, s) in c.sparseTensors {
            for p in s.parts { _ = try? p.withContiguousBytes { $0.count } }
            _ = try? TensorStats.compute(s.values)
        }
    }
}

#if CKPT_FUZZ
/// libFuzzer entry point (built with -sanitize=fuzzer,address by `make fuzz`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    readEverything(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
               _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point as `<target>_main`; hand control to libFuzzer's driver.
@_cdecl("ckpt_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return runDriver(&c, &v) { data, size in fuzzOneInput(data, size) }
}
#else
import Foundation

/// Without the fuzzer: replays the files given as arguments (a corpus or a crash input).
@main
struct Replay {
    static func main() {
        for path in CommandLine.arguments.dropFirst() {
            guard let d = FileManager.default.contents(atPath: path) else { continue }
            d.withUnsafeBytes { readEverything($0) }
        }
    }
}
#endif
