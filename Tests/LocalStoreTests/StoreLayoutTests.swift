import Foundation
import Testing
@testable import LocalStore

@Suite struct StoreLayoutTests {
    @Test func defaultRootFollowsXDG() {
        #expect(StoreLayout.defaultRoot(environment: ["XDG_DATA_HOME": "/x"]).path == "/x/datasource-agent")
        #expect(StoreLayout.defaultRoot(environment: ["HOME": "/home/u"]).path == "/home/u/.local/share/datasource-agent")
    }
}
