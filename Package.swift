// swift-tools-version: 6.0
import PackageDescription

/// `-O` in debug builds as well (release builds are optimised anyway).
let optimisedInDebug: [SwiftSetting] = [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "ckpt",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ckpt", targets: ["ckpt"]),
        .library(name: "CkptFormat", targets: ["CkptFormat"]),
        .library(name: "CkptTensor", targets: ["CkptTensor"]),
        .library(name: "CkptData", targets: ["CkptData"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CZip", pkgConfig: "libzip", providers: [.apt(["libzip-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .target(name: "CkptTensor", dependencies: ["CkptAVX512"], swiftSettings: optimisedInDebug),
        .target(name: "CkptFormat", dependencies: ["CkptTensor", "CZip"]),
        .target(name: "CkptSurgery", dependencies: ["CkptTensor"]),
        // image folders, JPEG/PNG decoding as PIL decodes, torchvision's transforms, the batch loader
        .target(name: "CkptData", dependencies: ["CkptTensor", "CJPEG", "CPNG"], swiftSettings: optimisedInDebug),
        // the GEMM microkernel and SHA-256 block function, compiled for AVX-512 and the SHA extensions
        // and always optimised (debug test builds too); called only on CPUs that report avx512f / sha_ni
        .target(name: "CkptAVX512", swiftSettings: [
            .unsafeFlags(["-Xcc", "-mavx512f", "-Xcc", "-mfma", "-Xcc", "-msha", "-Xcc", "-mssse3", "-O", "-enforce-exclusivity=unchecked"]),
        ]),
        // the numeric targets are optimised in debug builds too: the training tests run VGG and
        // SegNet steps against torch, minutes unoptimised, seconds optimised
        .target(name: "CkptKernels", dependencies: ["CkptTensor", "COpenBLAS", "CkptAVX512"], swiftSettings: optimisedInDebug),
        .target(name: "CkptNN", dependencies: ["CkptTensor", "CkptKernels"], swiftSettings: optimisedInDebug),
        .target(name: "CkptZoo", dependencies: ["CkptNN", "CkptTensor"], swiftSettings: optimisedInDebug),
        // what needs models on top of surgery: transplant proofs, losses' use, optimizers, the training step, fine-tuning on image folders
        .target(name: "CkptTrain", dependencies: ["CkptTensor", "CkptKernels", "CkptNN", "CkptZoo", "CkptSurgery", "CkptData"],
                swiftSettings: optimisedInDebug),
        .target(name: "CkptCLI", dependencies: [
            "CkptTensor", "CkptFormat", "CkptSurgery", "CkptZoo", "CkptNN", "CkptKernels", "CkptTrain", "CkptData",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ckpt", dependencies: ["CkptCLI"]),
        // libFuzzer target over the readers: `make fuzz` builds it with -sanitize=fuzzer,address
        .executableTarget(name: "ckpt-fuzz", dependencies: ["CkptFormat", "CkptTensor"]),
        .testTarget(name: "CkptTensorTests", dependencies: ["CkptTensor"]),
        .testTarget(name: "CkptFormatTests", dependencies: ["CkptFormat", "CkptTensor"]),
        .testTarget(name: "CkptCLITests", dependencies: ["CkptFormat", "CkptTensor"], exclude: ["Snapshots"]),
        .testTarget(name: "CkptSurgeryTests", dependencies: ["CkptSurgery", "CkptTensor"]),
        .testTarget(name: "CkptDataTests", dependencies: ["CkptData", "CkptTensor", "CkptFormat"]),
        .testTarget(name: "CkptKernelsTests", dependencies: ["CkptKernels", "CkptTensor"]),
        .testTarget(name: "CkptTrainTests", dependencies: ["CkptTrain", "CkptZoo", "CkptNN", "CkptSurgery", "CkptTensor", "CkptFormat", "CkptData"],
                    swiftSettings: optimisedInDebug),
        .testTarget(name: "CkptZooTests", dependencies: ["CkptZoo", "CkptNN", "CkptKernels", "CkptTensor", "CkptFormat"]),
    ]
)
