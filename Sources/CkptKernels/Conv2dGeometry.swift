// N images, C channels, H rows, W columns (NCHW); kernels are [C_out, C_in/groups, kH, kW].

/// The hyper-parameters of a 2-d convolution, shared by `Conv2d` and `ConvTranspose2d`.
///
/// PyTorch counterpart: the constructor arguments of `torch.nn.Conv2d` / `ConvTranspose2d`.
public struct Conv2dGeometry: Sendable, Hashable {
    /// Input channels (`in_channels`).
    public var inputChannels: Int
    /// Output channels (`out_channels`).
    public var outputChannels: Int
    /// Kernel rows and columns (`kernel_size`).
    public var kernelSize: (height: Int, width: Int)
    /// Step between windows (`stride`).
    public var stride: (height: Int, width: Int)
    /// Implicit zero padding on each side (`padding`).
    public var padding: (height: Int, width: Int)
    /// Spacing between kernel taps (`dilation`).
    public var dilation: (height: Int, width: Int)
    /// Channel groups (`groups`); both channel counts are multiples of it.
    public var groups: Int
    /// Extra rows/columns added on one side of a transposed convolution's output (`output_padding`).
    public var outputPadding: (height: Int, width: Int)

    /// A square-kernel geometry, the way most models write it.
    public init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: Int = 0, dilation: Int = 1, groups: Int = 1, outputPadding: Int = 0) {
        self.init(inputChannels: inputChannels, outputChannels: outputChannels,
                  kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), dilation: (dilation, dilation), groups: groups,
                  outputPadding: (outputPadding, outputPadding))
    }

    /// A geometry with separate row and column settings.
    public init(inputChannels: Int, outputChannels: Int, kernelSize: (height: Int, width: Int),
                stride: (height: Int, width: Int) = (1, 1), padding: (height: Int, width: Int) = (0, 0),
                dilation: (height: Int, width: Int) = (1, 1), groups: Int = 1,
                outputPadding: (height: Int, width: Int) = (0, 0)) {
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.outputPadding = outputPadding
    }

    /// Validates the geometry and the operands of a convolution (`transposed` false) or transposed
    /// convolution (true): the one place every convolution kernel, forward and backward, checks them.
    /// - Returns: the input's `(n, c, h, w)`.
    /// - Throws: `KernelError` naming `operation` and the operand that does not fit.
    func checkOperands(_ operation: String, input: DenseTensor, weight: DenseTensor, bias: DenseTensor?,
                       transposed: Bool) throws -> (n: Int, c: Int, h: Int, w: Int) {
        try validate(operation: operation)
        let (n, c, h, w) = try input.nchw(for: operation)
        guard c == inputChannels else {
            throw KernelError.shapeMismatch(operation: operation, operand: "input", expected: "[N, \(inputChannels), H, W]", got: input.shape)
        }
        let expected = transposed ? transposedWeightShape : convolutionWeightShape
        guard weight.shape == expected else {
            throw KernelError.shapeMismatch(operation: operation, operand: "weight", expected: "\(expected)", got: weight.shape)
        }
        if let b = bias, b.shape != [outputChannels] {
            throw KernelError.shapeMismatch(operation: operation, operand: "bias", expected: "[\(outputChannels)]", got: b.shape)
        }
        return (n, c, h, w)
    }

    /// Checks that the numbers describe a convolution PyTorch would build.
    /// - Throws: `KernelError.invalidArgument` naming the bad setting.
    public func validate(operation: String) throws {
        func bad(_ m: String) -> KernelError { .invalidArgument(operation: operation, message: m) }
        guard groups >= 1 else { throw bad("groups must be positive, got \(groups)") }
        guard inputChannels >= 1, outputChannels >= 1 else {
            throw bad("channels must be positive, got \(inputChannels)→\(outputChannels)")
        }
        guard inputChannels % groups == 0, outputChannels % groups == 0 else {
            throw bad("channels \(inputChannels)→\(outputChannels) are not divisible by groups \(groups)")
        }
        guard kernelSize.height >= 1, kernelSize.width >= 1 else { throw bad("kernel size must be positive") }
        guard stride.height >= 1, stride.width >= 1 else { throw bad("stride must be positive") }
        guard dilation.height >= 1, dilation.width >= 1 else { throw bad("dilation must be positive") }
        guard padding.height >= 0, padding.width >= 0 else { throw bad("padding must be non-negative") }
        guard outputPadding.height >= 0, outputPadding.width >= 0,
              outputPadding.height < max(stride.height, dilation.height),
              outputPadding.width < max(stride.width, dilation.width) else {
            throw bad("output padding must be smaller than stride or dilation")
        }
    }

    /// Effective kernel extent once dilated: `dilation·(k−1)+1`.
    var dilatedKernel: (height: Int, width: Int) {
        (dilation.height * (kernelSize.height - 1) + 1, dilation.width * (kernelSize.width - 1) + 1)
    }

    /// Output rows and columns of a convolution over an `h×w` input (`Conv2d` shape formula).
    /// - Throws: `KernelError.invalidArgument` when the padded input is smaller than the kernel.
    public func convolutionOutputSize(height h: Int, width w: Int) throws -> (height: Int, width: Int) {
        let k = dilatedKernel
        let ph = h + 2 * padding.height, pw = w + 2 * padding.width
        guard ph >= k.height, pw >= k.width else {
            throw KernelError.invalidArgument(
                operation: "conv2d",
                message: "padded input \(ph)×\(pw) is smaller than the dilated kernel \(k.height)×\(k.width)")
        }
        return ((ph - k.height) / stride.height + 1, (pw - k.width) / stride.width + 1)
    }

    /// Output rows and columns of a transposed convolution over an `h×w` input
    /// (`ConvTranspose2d` shape formula).
    /// - Throws: `KernelError.invalidArgument` when the result would be empty.
    public func transposedOutputSize(height h: Int, width w: Int) throws -> (height: Int, width: Int) {
        let k = dilatedKernel
        let oh = (h - 1) * stride.height - 2 * padding.height + k.height + outputPadding.height
        let ow = (w - 1) * stride.width - 2 * padding.width + k.width + outputPadding.width
        guard oh >= 1, ow >= 1 else {
            throw KernelError.invalidArgument(operation: "conv_transpose2d", message: "output would be \(oh)×\(ow)")
        }
        return (oh, ow)
    }

    /// Weight shape of a `Conv2d`: `[C_out, C_in/groups, kH, kW]`.
    public var convolutionWeightShape: [Int] {
        [outputChannels, inputChannels / max(groups, 1), kernelSize.height, kernelSize.width]
    }

    /// Weight shape of a `ConvTranspose2d`: `[C_in, C_out/groups, kH, kW]`.
    public var transposedWeightShape: [Int] {
        [inputChannels, outputChannels / max(groups, 1), kernelSize.height, kernelSize.width]
    }

    /// True when the convolution is a plain matrix product over pixels (1×1, stride 1, no padding).
    var isPointwise: Bool {
        kernelSize == (1, 1) && stride == (1, 1) && padding == (0, 0)
    }

    /// Equal when every setting is equal (tuples keep the synthesised conformance away).
    public static func == (a: Conv2dGeometry, b: Conv2dGeometry) -> Bool {
        a.inputChannels == b.inputChannels && a.outputChannels == b.outputChannels
            && a.kernelSize == b.kernelSize && a.stride == b.stride && a.padding == b.padding
            && a.dilation == b.dilation && a.groups == b.groups && a.outputPadding == b.outputPadding
    }

    /// Hashes every setting.
    public func hash(into hasher: inout Hasher) {
        for v in [inputChannels, outputChannels, kernelSize.height, kernelSize.width, stride.height, stride.width,
                  padding.height, padding.width, dilation.height, dilation.width, groups,
                  outputPadding.height, outputPadding.width] {
            hasher.combine(v)
        }
    }
}
