import CkptKernels
import CkptNN
import CkptZoo
import Foundation
import XCTest

/// Eval-mode forward throughput, run only when `CKPT_BENCH` is set (use a release build):
/// `CKPT_BENCH=resnet34:1:224,vgg19:1:224 swift test -c release --filter BenchmarkTests`.
final class BenchmarkTests: XCTestCase {
    func testForwardThroughput() throws {
        guard let spec = ProcessInfo.processInfo.environment["CKPT_BENCH"] else {
            throw XCTSkip("set CKPT_BENCH=model:batch:size,… to run")
        }
        let iterations = Int(ProcessInfo.processInfo.environment["CKPT_BENCH_ITERATIONS"] ?? "") ?? 3
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: ":").map(String.init)
            let name = parts[0]
            let batch = parts.count > 1 ? Int(parts[1]) ?? 1 : 1
            let entry = try Zoo.entry(named: name)
            let size = parts.count > 2 ? Int(parts[2]) : nil
            let model = try Zoo.make(name, seed: 1)
            let inputs = try entry.inputShapes(batch: batch, size: size).enumerated().map { a, s in
                try DenseTensor(shape: s, values: (0 ..< s.reduce(1, *)).map { Float(sin(0.7 * Double($0) + Double(a))) })
            }
            _ = try model.evaluate(inputs)
            var best = Double.infinity
            for _ in 0 ..< iterations {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try model.evaluate(inputs)
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            let s = try model.summarize(inputShapes: entry.inputShapes(batch: batch, size: size))
            let gflops = 2 * Double(s.arithmeticMultAdds) / (best / 1e3) / 1e9
            print(String(format: "bench %@ batch %d: %.1f ms/batch, %.2f img/s, %.1f GFLOP/s", name, batch, best,
                         Double(batch) / (best / 1e3), gflops))
        }
    }
}
