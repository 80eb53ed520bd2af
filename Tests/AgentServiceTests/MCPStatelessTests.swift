@testable import AgentService
import JSONKit
import JSONRPC
import Testing

@Suite struct MCPStatelessTests {
    static let meta: JSONValue = [
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": [:],
        "io.modelcontextprotocol/clientInfo": ["name": "t", "version": "1"],
    ]

    @Test func aValidEnvelopePasses() {
        #expect(MCPStateless.usesEnvelope(["_meta": Self.meta]))
        #expect(!MCPStateless.usesEnvelope(["_meta": ["progressToken": 1]]))
        #expect(MCPStateless.checkEnvelope(["_meta": Self.meta], supported: ["2026-07-28"]) == nil)
    }

    @Test func missingKeysAreInvalidParams() {
        let error = MCPStateless.checkEnvelope([:], supported: ["2026-07-28"])
        #expect(error?.code == JSONRPCError.invalidParamsCode)
        #expect(error?.data?["missing"] == [
            "io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientCapabilities",
        ])
    }

    @Test func anotherVersionNamesTheSupportedOnes() {
        let params: JSONValue = ["_meta": ["io.modelcontextprotocol/protocolVersion": "2099-01-01", "io.modelcontextprotocol/clientCapabilities": [:]]]
        let error = MCPStateless.checkEnvelope(params, supported: ["2026-07-28", "2025-11-25"])
        #expect(error?.code == -32022)
        #expect(error?.data == ["supported": ["2026-07-28", "2025-11-25"], "requested": "2099-01-01"])
    }

    @Test func resultsGainTheirTypeAndCacheFields() throws {
        let empty = MCPStateless.decorate(RawJSON(bytes: Array("{}".utf8)), method: "tools/call")
        #expect(try JSONParser.parse(empty.bytes) == ["resultType": "complete"])
        let list = MCPStateless.decorate(RawJSON(bytes: Array("{\"tools\":[]} ".utf8)), method: "tools/list")
        #expect(try JSONParser.parse(list.bytes) == ["tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"])
    }

    @Test func listenHonorsOnlyWhatThisServerSends() {
        let filter = MCPStateless.Filter(requested: [
            "toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true,
            "resourceSubscriptions": ["datasource://0b7d6c1e-5c8f-4d3a-9a57-2f1c0e4b8a11", "file:///etc/passwd"],
        ])
        #expect(filter.json == [
            "resourcesListChanged": true, "resourceSubscriptions": ["datasource://0b7d6c1e-5c8f-4d3a-9a57-2f1c0e4b8a11"],
        ])
    }
}
