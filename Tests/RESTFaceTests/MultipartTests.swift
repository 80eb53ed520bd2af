import AgentService
import JSONKit
@testable import RESTFace
import Testing

@Suite struct MultipartParserTests {
    static let body = Array((
        "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n{\"delimiter\":\";\"}\r\n"
            + "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a;b \\\"q\\\".csv\"\r\nContent-Type: text/csv\r\n\r\n"
            + "x,y\r\n--XyQ-near-miss\r\n-XyZ\r\n1,2\r\n--XyZ--\r\nepilogue").utf8)

    struct Part: Equatable {
        var name: String?
        var fileName: String?
        var bytes: [UInt8]
    }

    static func parse(_ body: [UInt8], chunk: Int) throws -> [Part] {
        var parser = MultipartParser(boundary: "XyZ")
        var parts: [Part] = []
        var open = false
        var index = 0
        while index < body.count {
            let end = min(body.count, index + chunk)
            try parser.feed(body[index..<end]) { event in
                switch event {
                case .begin(let headers):
                    #expect(!open)
                    open = true
                    parts.append(Part(name: headers.name, fileName: headers.fileName, bytes: []))
                case .bytes(let bytes):
                    parts[parts.count - 1].bytes += bytes
                case .end:
                    open = false
                }
            }
            index = end
        }
        try parser.finish()
        return parts
    }

    @Test func splitsPartsWhereverTheChunksEnd() throws {
        let expected = [
            Part(name: "options", fileName: nil, bytes: Array("{\"delimiter\":\";\"}".utf8)),
            Part(name: "file", fileName: "a;b \"q\".csv", bytes: Array("x,y\r\n--XyQ-near-miss\r\n-XyZ\r\n1,2".utf8)),
        ]
        for chunk in [1, 2, 3, 5, 7, 13, 64, Self.body.count] {
            #expect(try Self.parse(Self.body, chunk: chunk) == expected, "chunk \(chunk)")
        }
    }

    @Test func refusesATruncatedBody() {
        let truncated = Array(Self.body.prefix(Self.body.count - 20))
        #expect(throws: MultipartParser.Failure.self) { try Self.parse(truncated, chunk: 4) }
    }

    @Test func readsTheBoundaryOfAContentType() {
        #expect(MultipartParser.boundary(contentType: "multipart/form-data; boundary=abc") == "abc")
        #expect(MultipartParser.boundary(contentType: "Multipart/Form-Data; charset=utf-8; boundary=\"a b;c\"") == "a b;c")
        #expect(MultipartParser.boundary(contentType: "application/json") == nil)
        #expect(MultipartParser.boundary(contentType: "multipart/form-data") == nil)
    }

    @Test func fileNamesAreReducedToOneSafeComponent() {
        #expect(RESTServer.fileName("../../etc/passwd") == "passwd")
        #expect(RESTServer.fileName("C:\\Users\\me\\data.csv") == "data.csv")
        #expect(RESTServer.fileName("..") == "upload")
        #expect(RESTServer.fileName(nil) == "upload")
        #expect(RESTServer.fileName("Zoë's data.csv") == "Zoë's data.csv")
    }
}

@Suite struct QueryStringTests {
    @Test func decodesFormEncoding() throws {
        let items = try RESTServer.queryItems("filter=price+%3E+100&columns=a&columns=b%2Cc&empty=&flag")
        #expect(items.map { "\($0.name)=\($0.value)" } == ["filter=price > 100", "columns=a", "columns=b,c", "empty=", "flag="])
        #expect(throws: (any Error).self) { try RESTServer.queryItems("a=%zz") }
    }

    @Test func convertsValuesToTheirParamTypes() throws {
        let data = try #require(AgentService.restOperations.first { $0.methodName == "datasources/data" })
        let params = try data.params(
            path: ["datasourceId": "550e8400-e29b-41d4-a716-446655440000"],
            query: [("page", "2"), ("limit", "abc"), ("columns", "a"), ("columns", "b"), ("sort", "7")], body: nil)
        #expect(params["page"] == .int(2))
        #expect(params["limit"] == .string("abc"))
        #expect(params["columns"] == .array([.string("a"), .string("b")]))
        #expect(params["sort"] == .string("7"))
        #expect(params["datasourceId"] == .string("550e8400-e29b-41d4-a716-446655440000"))
        #expect(throws: (any Error).self) { try data.params(path: [:], query: [("page", "1"), ("page", "2")], body: nil) }
    }
}

@Suite struct RateLimiterTests {
    @Test func countsPerKeyPerWallClockMinute() {
        let limiter = RateLimiter(limit: 2)
        let start = 1_700_000_000.0 - 1_700_000_000.0.truncatingRemainder(dividingBy: 60) + 50  // 10 s before a minute turns
        #expect(limiter.take("a", now: start) == .init(allowed: true, limit: 2, remaining: 1, reset: Int64(start) + 10, retryAfter: 10))
        #expect(limiter.take("a", now: start + 1).remaining == 0)
        let refused = limiter.take("a", now: start + 2)
        #expect(!refused.allowed && refused.remaining == 0 && refused.retryAfter == 8)
        #expect(limiter.take("b", now: start + 2).allowed)
        #expect(limiter.take("a", now: start + 10).allowed, "a new minute starts a new count")
    }
}
