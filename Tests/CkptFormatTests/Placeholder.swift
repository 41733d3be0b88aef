import XCTest
final class CkptFormatTestsPlaceholder: XCTestCase { func testNothing() {} }
