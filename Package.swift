// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "ckpt",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ckpt", targets: ["ckpt"]),
        .library(name: "CkptFormat", targets: ["CkptFormat"]),
        .library(name: "CkptTensor", targets: ["CkptTensor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CZip", pkgConfig: "libzip", providers: [.apt(["libzip-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CkptTensor"),
        .target(name: "CkptFormat", dependencies: ["CkptTensor", "CZip"]),
        .target(name: "CkptSurgery", dependencies: ["CkptTensor"]),
        // the GEMM microkernel, compiled for AVX-512 and always optimised (debug test builds too);
        // CkptKernels calls into it only on CPUs that report avx512f
        .target(name: "CkptAVX512", swiftSettings: [
            .unsafeFlags(["-Xcc", "-mavx512f", "-Xcc", "-mfma", "-O", "-enforce-exclusivity=unchecked"]),
        ]),
        .target(name: "CkptKernels", dependencies: ["CkptTensor", "COpenBLAS", "CkptAVX512"]),
        .target(name: "CkptNN", dependencies: ["CkptTensor", "CkptKernels"]),
        .target(name: "CkptZoo", dependencies: ["CkptNN"]),
        .target(name: "CkptCLI", dependencies: [
            "CkptTensor", "CkptFormat", "CkptSurgery", "CkptZoo", "CkptNN", "CkptKernels",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ckpt", dependencies: ["CkptCLI"]),
        // libFuzzer target over the readers: `make fuzz` builds it with -sanitize=fuzzer,address
        .executableTarget(name: "ckpt-fuzz", dependencies: ["CkptFormat", "CkptTensor"]),
        .testTarget(name: "CkptTensorTests", dependencies: ["CkptTensor"]),
        .testTarget(name: "CkptFormatTests", dependencies: ["CkptFormat", "CkptTensor"]),
        .testTarget(name: "CkptCLITests", dependencies: ["CkptFormat", "CkptTensor"], exclude: ["Snapshots"]),
        .testTarget(name: "CkptSurgeryTests", dependencies: ["CkptSurgery", "CkptTensor"]),
        .testTarget(name: "CkptKernelsTests", dependencies: ["CkptKernels", "CkptTensor"]),
        .testTarget(name: "CkptZooTests", dependencies: ["CkptZoo", "CkptNN", "CkptKernels", "CkptTensor", "CkptFormat"]),
    ]
)
