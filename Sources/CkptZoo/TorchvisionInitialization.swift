import CkptKernels
import CkptNN

/// The weight initialisation torchvision's model constructors apply after building the layers.
enum TorchvisionInitialization {
    /// How the constructor initialises `nn.Linear` layers.
    enum LinearRule: Sendable {
        /// `normal_(0, 0.01)`, bias 0 (VGG).
        case normal(std: Float)
        /// PyTorch's default (`kaiming_uniform_(a=√5)`, uniform bias): ResNet's `fc`, AlexNet.
        case keepDefault
    }

    /// Convs: `kaiming_normal_(mode='fan_out', nonlinearity='relu')`, bias 0; batch norm γ = 1,
    /// β = 0; linears per `linear`. Shared modules are initialised once.
    static func apply(to model: Module, convolutions: Bool = true, linear: LinearRule, rng: inout SeededGenerator) {
        var seen = Set<ObjectIdentifier>()
        for (_, m) in model.namedModules() where seen.insert(ObjectIdentifier(m)).inserted {
            if convolutions, let c = m as? Conv2d {
                c.weight.value = Initialization.kaimingNormal(c.weight.value.shape, mode: .fanOut, using: &rng)
                if let b = c.bias { b.value = DenseTensor(shape: b.value.shape) }
            } else if let bn = m as? BatchNorm2d {
                bn.weight.value = DenseTensor(shape: bn.weight.value.shape, repeating: 1)
                bn.bias.value = DenseTensor(shape: bn.bias.value.shape)
            } else if let l = m as? Linear, case let .normal(std) = linear {
                l.weight.value = Initialization.normal(l.weight.value.shape, std: std, using: &rng)
                if let b = l.bias { b.value = DenseTensor(shape: b.value.shape) }
            }
        }
    }
}
