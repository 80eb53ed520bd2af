import DataSourceDomain
import Foundation
import JSONKit
import NIOHTTP1
import Testing
@testable import RemoteBackend

@Suite struct RemoteBackendTests {
    @Test func retryAfterInSecondsOrAsAnHTTPDate() {
        #expect(ClaroClient.retryAfter(HTTPHeaders([("Retry-After", "2")])) == .seconds(2))
        #expect(ClaroClient.retryAfter(HTTPHeaders([("Retry-After", "0.5")])) == .milliseconds(500))
        #expect(ClaroClient.retryAfter(HTTPHeaders([("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")])) == .zero)
        #expect(ClaroClient.retryAfter(HTTPHeaders([("Retry-After", "soon")])) == nil)
        #expect(ClaroClient.retryAfter(HTTPHeaders()) == nil)
    }

    @Test func queryItemsArePercentEncoded() {
        #expect(ClaroClient.encode("price > 100 AND name = 'a&b'") == "price%20%3E%20100%20AND%20name%20%3D%20%27a%26b%27")
    }

    @Test func multipartCarriesTheFileAndOptions() {
        let form = MultipartForm(fileName: "a \"b\".csv", contentType: "text/csv", bytes: Array("x\r\n".utf8), options: ["header": true])
        let text = String(decoding: form.body, as: UTF8.self)
        #expect(form.contentType == "multipart/form-data; boundary=\(form.boundary)")
        #expect(text.hasPrefix("--\(form.boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".csv\"\r\nContent-Type: text/csv\r\n\r\nx\r\n\r\n"))
        #expect(text.contains("name=\"options\"\r\nContent-Type: application/json\r\n\r\n{\"header\":true}\r\n"))
        #expect(text.hasSuffix("--\(form.boundary)--\r\n"))
    }

    @Test func cacheKeepsAnswersPerServerAndForgets() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cache-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("cache.sqlite").path
        let one = try MetadataCache(path: path, baseURL: "http://a/api/v2", apiKey: "k")
        let other = try MetadataCache(path: path, baseURL: "http://b/api/v2", apiKey: "k")
        let id = DataSourceID.random()
        try one.storeDetails(id, json: ["x": 1], fetchedAt: 100)
        try one.storeList(ListQuery(), json: ["y": 2], fetchedAt: 100)
        #expect(try one.details(id)?.json == ["x": 1])
        #expect(try one.list(ListQuery())?.fetchedAt == 100)
        #expect(try one.list(ListQuery(page: 2)) == nil)
        #expect(try other.details(id) == nil)
        try one.forget(id)
        #expect(try one.details(id) == nil)
        #expect(try one.list(ListQuery()) == nil)
    }

    @Test func watcherBacksOffFromOneSecondDoublingToThirtySeconds() {
        let watcher = ProcessingWatcher(initialDelay: .seconds(1), maxDelay: .seconds(30))
        let id = DataSourceID.random()
        watcher.watch(id)
        var delays: [Duration] = [watcher.entry(id)!.delay]
        for _ in 0..<6 {
            watcher.backOff(id)
            delays.append(watcher.entry(id)!.delay)
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30)])
        watcher.watch(id)
        #expect(watcher.entry(id)?.delay == .seconds(30), "watching again does not reset the backoff")
        #expect(watcher.stop(id) != nil && watcher.entry(id) == nil)
    }
}
