import ArgumentParser
import CkptKernels
import CkptNN
import Foundation

struct BenchKernelTmp: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kernel-tmp", shouldDisplay: false)
    @Argument var spec: String  // n,cin,cout,h,k,stride,pad
    func run() throws {
        let v = spec.split(separator: ",").map { Int($0)! }
        let (n, cin, cout, h, k, s, p) = (v[0], v[1], v[2], v[3], v[4], v[5], v[6])
        let g = Conv2dGeometry(inputChannels: cin, outputChannels: cout, kernelSize: k, stride: s, padding: p)
        var rng = SeededGenerator(seed: 1)
        let x = Initialization.uniform([n, cin, h, h], bound: 1, using: &rng)
        let w = Initialization.uniform(g.convolutionWeightShape, bound: 0.1, using: &rng)
        let y = try Convolution.forward(x, weight: w, bias: nil, geometry: g)
        let dy = Initialization.uniform(y.shape, bound: 1, using: &rng)
        let macs = Double(y.count) * Double(cin * k * k)
        if k == 3 {
            var bt = 1e9
            for _ in 0 ..< 3 { let t = Date(); _ = try Winograd4x4.transform(weight: w); bt = min(bt, Date().timeIntervalSince(t)) }
            var bw = 1e9
            let u = try Winograd4x4.transform(weight: w)
            for _ in 0 ..< 3 { let t = Date(); _ = try Winograd4x4.forward(x, weights: u, bias: nil, geometry: g, epilogue: .none); bw = min(bw, Date().timeIntervalSince(t)) }
            print(String(format: "winograd transform %.1f ms, winograd forward %.1f ms", bt * 1000, bw * 1000))
        }
        for (label, needs) in [("fwd", GradientNeeds(input: false, weight: false, bias: false)),
                               ("dW", GradientNeeds(input: false, weight: true, bias: false)),
                               ("dX", GradientNeeds(input: true, weight: false, bias: false))] {
            var best = 1e9
            for _ in 0 ..< 3 {
                let t = Date()
                if label == "fwd" { _ = try Convolution.forward(x, weight: w, bias: nil, geometry: g) }
                else { _ = try Convolution.backward(dy, input: x, weight: w, geometry: g, needs: needs) }
                best = min(best, Date().timeIntervalSince(t))
            }
            print(String(format: "%@ %@: %.1f ms, %.1f GFLOP/s", spec, label, best * 1000, 2 * macs / best / 1e9))
        }
    }
}
