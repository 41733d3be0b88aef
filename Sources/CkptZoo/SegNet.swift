import CkptKernels
import CkptNN

// N images, C channels, H rows, W columns (NCHW).

/// SegNet on a vgg19_bn encoder, taking two single-channel images concatenated on channels.
///
/// `input` is `Conv2d(2,64,3,1,1), BatchNorm2d(64), ReLU`; `enc1…enc5` are vgg19_bn
/// `features[3:7], [7:14], [14:27], [27:40], [40:]` renumbered from 0; `dec5` is
/// `ConvTranspose2d(512,512,2,2)` then one `Conv2d(512,512,3,p1), BatchNorm2d(512), ReLU` triple
/// listed four times; `dec4…dec1` are decoder blocks whose `decode` holds a transposed conv, a
/// conv to half width, the shared middle triple listed `n − 2` times, and a conv to the output
/// width. A listed-again triple is one module, as a Python list `* n` makes it, so its keys
/// (`dec5.1`, `dec5.4`, `dec5.7`, `dec5.10`) share one parameter.
public final class SegNet: Module {
    let input: Sequential
    let encoders: [Sequential]
    let dec5: Sequential
    let decoders: [DecoderBlock]

    /// The network with `numClasses` output channels; torchvision init for the encoder, and
    /// kaiming-normal convolutions with zero bias for the decoder. With `sharesRepeatedLayers`
    /// false every listed triple is its own module (same keys, independent parameters).
    public init(numClasses: Int, sharesRepeatedLayers: Bool = true, rng: inout SeededGenerator) {
        input = Sequential([Conv2d(2, 64, kernelSize: 3, stride: 1, padding: 1, rng: &rng), BatchNorm2d(64), ReLU()])
        let configuration = VGG.configurations["E"] ?? []
        let features = VGG.makeFeatures(configuration, batchNorm: true, rng: &rng).children.map(\.module)
        encoders = [3 ..< 7, 7 ..< 14, 14 ..< 27, 27 ..< 40, 40 ..< features.count].map { Sequential(Array(features[$0])) }
        var layers: [Module] = [ConvTranspose2d(512, 512, kernelSize: 2, stride: 2, rng: &rng)]
        layers += SegNet.repeatedTriples(channels: 512, count: 4, shared: sharesRepeatedLayers, rng: &rng)
        dec5 = Sequential(layers)
        let shared = sharesRepeatedLayers
        decoders = [
            DecoderBlock(inputChannels: 1024, outputChannels: 256, convolutions: 4, shared: shared, rng: &rng),
            DecoderBlock(inputChannels: 512, outputChannels: 128, convolutions: 4, shared: shared, rng: &rng),
            DecoderBlock(inputChannels: 256, outputChannels: 64, convolutions: 2, shared: shared, rng: &rng),
            DecoderBlock(inputChannels: 128, outputChannels: numClasses, convolutions: 2, shared: shared, rng: &rng),
        ]
        super.init()
        register("input", input)
        for (i, e) in encoders.enumerated() { register("enc\(i + 1)", e) }
        register("dec5", dec5)
        for (i, d) in decoders.enumerated() { register("dec\(4 - i)", d) }
        TorchvisionInitialization.apply(to: self, linear: .keepDefault, rng: &rng)
    }

    public override var typeName: String { "SegNet" }

    /// `[Conv2d(c,c,3,p1), BatchNorm2d(c), ReLU] * count`: one module listed `count` times when
    /// `shared` (Python list repetition), else `count` independent triples.
    static func repeatedTriples(channels c: Int, count: Int, shared: Bool, rng: inout SeededGenerator) -> [Module] {
        var out: [Module] = []
        var triple: [Module] = []
        for i in 0 ..< count {
            if i == 0 || !shared {
                triple = [Conv2d(c, c, kernelSize: 3, padding: 1, rng: &rng), BatchNorm2d(c), ReLU()]
            }
            out += triple
        }
        return out
    }

    public override var inputNames: [String] { ["x1", "x2"] }

    public override func forward(inputs: [DenseTensor], context: ForwardContext) throws -> DenseTensor {
        guard inputs.count == 2 else { throw NNError.inputCount(expected: inputNames, got: inputs.count) }
        for (name, x) in zip(inputNames, inputs) where x.rank != 4 || x.shape[1] != 1 {
            throw NNError.inputShape(name: name, expected: "[N, 1, H, W]", got: x.shape)
        }
        let flowIn = context.flowNeedsGradient
        var x = try concatenateRecording(inputs, partFlows: [flowIn, flowIn], context: context)
        x = try run(input, named: "input", x, context: context)
        var skips: [(tensor: DenseTensor, flow: Bool)] = []
        for (i, e) in encoders.enumerated() {
            x = try run(e, named: "enc\(i + 1)", x, context: context)
            skips.append((x, context.flowNeedsGradient))
        }
        x = try run(dec5, named: "dec5", x, context: context)
        for (i, d) in decoders.enumerated() {
            // dec4(cat(enc4, dec5)) … dec1(cat(enc1, dec2))
            let skip = skips[3 - i]
            guard skip.tensor.shape.dropFirst(2) == x.shape.dropFirst(2) else {
                throw NNError.inputShape(name: inputNames[0], expected: "height and width divisible by 32", got: inputs[0].shape)
            }
            x = try concatenateRecording([skip.tensor, x], partFlows: [skip.flow, context.flowNeedsGradient], context: context)
            x = try run(d, named: "dec\(4 - i)", x, context: context)
        }
        return x
    }

    /// Mirrors `forward`: each decoder's input gradient splits into its skip's part and the part
    /// for the stage below; an encoder's output gradient sums its skip's and its successor's.
    public override func backward(inputs dOutput: DenseTensor?, context: ForwardContext) throws -> [DenseTensor?] {
        var g = dOutput
        var skipGradients = [DenseTensor?](repeating: nil, count: 4)
        for i in decoders.indices.reversed() {
            g = try runBackward(decoders[i], named: "dec\(4 - i)", g, context: context)
            let parts = try splitGradient(g, context: context)
            skipGradients[3 - i] = parts[0]
            g = parts[1]
        }
        g = try runBackward(dec5, named: "dec5", g, context: context)
        for i in encoders.indices.reversed() {
            if i < 4 { g = try sumGradients(g, skipGradients[i], context: context) }
            g = try runBackward(encoders[i], named: "enc\(i + 1)", g, context: context)
        }
        g = try runBackward(input, named: "input", g, context: context)
        return try splitGradient(g, context: context)
    }
}

/// A SegNet decoder stage: `decode` = transposed conv, conv to half width, the shared middle
/// triple listed `convolutions − 2` times, conv to the output width (each conv + BN + ReLU).
public final class DecoderBlock: Module {
    let decode: Sequential

    /// `_DecoderBlock(in_channels, out_channels, num_conv_layers)`.
    init(inputChannels: Int, outputChannels: Int, convolutions: Int, shared: Bool, rng: inout SeededGenerator) {
        let middle = inputChannels / 2
        var layers: [Module] = [
            ConvTranspose2d(inputChannels, inputChannels, kernelSize: 2, stride: 2, rng: &rng),
            Conv2d(inputChannels, middle, kernelSize: 3, padding: 1, rng: &rng), BatchNorm2d(middle), ReLU(),
        ]
        layers += SegNet.repeatedTriples(channels: middle, count: max(convolutions - 2, 0), shared: shared, rng: &rng)
        layers += [Conv2d(middle, outputChannels, kernelSize: 3, padding: 1, rng: &rng), BatchNorm2d(outputChannels), ReLU()]
        decode = Sequential(layers)
        super.init()
        register("decode", decode)
    }

    public override var typeName: String { "_DecoderBlock" }

    public override func forward(_ input: DenseTensor, context: ForwardContext) throws -> DenseTensor {
        try run(decode, named: "decode", input, context: context)
    }

    /// Mirrors `forward`.
    public override func backward(_ dOutput: DenseTensor?, context: ForwardContext) throws -> DenseTensor? {
        try runBackward(decode, named: "decode", dOutput, context: context)
    }
}
