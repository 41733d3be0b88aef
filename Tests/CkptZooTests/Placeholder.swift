import XCTest
final class CkptZooTestsPlaceholder: XCTestCase { func testNothing() {} }
