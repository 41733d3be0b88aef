internal import CkptAVX512

// N images, C channels, H rows, W columns (NCHW); channels-last (NHWC) where said.

/// The weight gradient's unfolded input gathered from a zero-padded channels-last copy of the
/// input (`ChannelsLastPanels`): one transpose of the input per call instead of one per tap, and
/// panels made by plain vector copies. Its matrix rows run tap-major (`(i·kW + j)·C_in/g + c`), so
/// the weight gradient comes out with its columns in that order and `restoreColumnOrder` puts them
/// back. Each element of the product is the same chain of multiply-adds as with the im2col order,
/// so the gradient is bit for bit the same.
public enum ChannelsLastUnfold {
    /// False to unfold by transposes as before (tests compare the two); written only between passes.
    nonisolated(unsafe) public static var isEnabled = true

    /// True when the gather pays: the microkernel runs and a group has at least 16 input channels
    /// (fewer make runs too short for vector copies: the first layer's 3 channels stay on the im2col).
    static func applies(_ g: Conv2dGeometry) -> Bool {
        isEnabled && Microkernel.isEnabled && g.inputChannels / g.groups >= 16
    }

    /// Floats of the padded copy of an `[n, c, h, w]` input.
    static func paddedCount(_ g: Conv2dGeometry, images n: Int, height h: Int, width w: Int) -> Int {
        ChannelsLastPanels.paddedCount(images: n, channels: g.inputChannels, height: h, width: w,
                                       padding: (g.padding.height, g.padding.width))
    }

    /// The input zero-padded and channels-last into `out` (`paddedCount` floats), images over the cores.
    static func pad(_ x: UnsafePointer<Float>, geometry g: Conv2dGeometry, images n: Int, height h: Int, width w: Int,
                    into out: UnsafeMutablePointer<Float>) {
        let box = UncheckedSendable((x, out))
        parallelRanges(n, lanes: Gemm.threadCount) { images in
            let (x, out) = box.value
            ChannelsLastPanels.pad(input: x, channels: g.inputChannels, height: h, width: w,
                                   padding: (g.padding.height, g.padding.width), images: images, into: out)
        }
    }

    /// Rows `matrixRows` (tap-major) of group `group`'s unfolded input for `pixels`, as panels of
    /// `B` in `Microkernel.unfoldTransposed`'s layout.
    static func gather(_ padded: UnsafePointer<Float>, geometry g: Conv2dGeometry, group: Int, height h: Int, width w: Int,
                       outputHeight oh: Int, outputWidth ow: Int, pixels: Range<Int>, matrixRows: Range<Int>,
                       into panels: UnsafeMutablePointer<Float>) {
        let cinG = g.inputChannels / g.groups
        ChannelsLastPanels.gather(padded: padded + group * cinG, totalChannels: g.inputChannels, channels: cinG,
                                  paddedHeight: h + 2 * g.padding.height, paddedWidth: w + 2 * g.padding.width,
                                  kernel: (g.kernelSize.height, g.kernelSize.width),
                                  stride: (g.stride.height, g.stride.width), dilation: (g.dilation.height, g.dilation.width),
                                  outputHeight: oh, outputWidth: ow, pixels: pixels, matrixRows: matrixRows, into: panels)
    }

    /// A weight gradient `[C_out, kdim]` with tap-major columns (`t·C_in/g + c`) back in the
    /// weight's order (`c·kH·kW + t`), with the lanes' partial sums of it (`partials`, whole
    /// gradients one after another) added in the same pass, in lane order as a separate sum adds them.
    static func restoreColumnOrder(_ dW: [Float], adding partials: [Float] = [], geometry g: Conv2dGeometry) -> [Float] {
        let taps = g.kernelSize.height * g.kernelSize.width
        let cinG = g.inputChannels / g.groups
        let kdim = cinG * taps
        let count = dW.count
        let lanes = count == 0 ? 0 : partials.count / count
        var out = [Float].uninitialized(count)
        dW.withUnsafeBufferPointer { s in
            partials.withUnsafeBufferPointer { p in
                out.withUnsafeMutableBufferPointer { d in
                    guard let sp = s.baseAddress, let dp = d.baseAddress else { return }
                    // nil when there are no partial sums (an empty array's baseAddress may not be nil)
                    let pp = lanes > 0 ? p.baseAddress : nil
                    let box = UncheckedSendable((sp, dp, pp))
                    parallelRanges(g.outputChannels, lanes: Gemm.threadCount) { rows in
                        let (sp, dp, pp) = box.value
                        for row in rows {
                            let src = sp + row * kdim, dst = dp + row * kdim
                            for c in 0 ..< cinG {
                                for t in 0 ..< taps {
                                    var v = src[t * cinG + c]
                                    if let pp {
                                        for l in 0 ..< lanes { v += pp[l * count + row * kdim + t * cinG + c] }
                                    }
                                    dst[c * taps + t] = v
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
