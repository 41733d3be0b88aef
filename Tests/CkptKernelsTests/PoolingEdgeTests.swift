import CkptKernels
import XCTest

// N images, C channels, H rows, W columns (NCHW).

final class PoolingEdgeTests: XCTestCase {
    func testMaxPoolPropagatesNaN() throws {
        let x = try DenseTensor(shape: [1, 1, 2, 4], values: [1, .nan, 3, 2, 0, 0, 5, 1])
        let y = try Pooling.maxForward(x, geometry: PoolGeometry(kernelSize: 2))
        XCTAssertTrue(y.values[0].isNaN)
        XCTAssertEqual(y.values[1], 5)
    }

    func testCeilModeOutputLengthMatchesTorch() throws {
        // torch: MaxPool2d(2, 2, padding=1, ceil_mode=True) on 5 → 3 (the window starting in the pad is dropped)
        XCTAssertEqual(try PoolGeometry(kernelSize: 2, stride: 2, padding: 1, ceilMode: true).outputLength(5, operation: "t"), 3)
        XCTAssertEqual(try PoolGeometry(kernelSize: 3, stride: 2, ceilMode: true).outputLength(8, operation: "t"), 4)
        XCTAssertEqual(try PoolGeometry(kernelSize: 3, stride: 2).outputLength(8, operation: "t"), 3)
    }
}
