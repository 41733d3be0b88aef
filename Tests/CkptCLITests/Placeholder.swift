import XCTest
final class CkptCLITestsPlaceholder: XCTestCase { func testNothing() {} }
