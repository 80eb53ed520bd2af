import JSONRPC
import Testing

@Suite struct MessageFramerTests {
    func feed(_ framer: inout MessageFramer, _ text: String) -> [FramedEvent] {
        Array(text.utf8).withUnsafeBufferPointer { framer.consume($0) }
    }

    func messages(_ events: [FramedEvent]) -> [String] {
        events.compactMap { if case .message(let b) = $0 { String(decoding: b, as: UTF8.self) } else { nil } }
    }

    @Test func detectsFramingFromFirstByte() {
        var lsp = MessageFramer(maxMessageBytes: 1000)
        _ = feed(&lsp, "Content-Length: 2\r\n\r\n{}")
        #expect(lsp.framing == .contentLength)
        var lower = MessageFramer(maxMessageBytes: 1000)
        _ = feed(&lower, "content-length: 2\r\n\r\n{}")
        #expect(lower.framing == .contentLength)
        var ndjson = MessageFramer(maxMessageBytes: 1000)
        _ = feed(&ndjson, "  [1]\n")
        #expect(ndjson.framing == .newlineDelimited)
    }

    @Test func splitAndCoalescedLSPMessages() {
        let stream = "Content-Length: 7\r\n\r\n{\"a\":1}Content-Length: 2\r\nContent-Type: x\r\n\r\n[]"
        for chunkSize in [1, 2, 3, 5, 8, 13, 1000] {
            var framer = MessageFramer(maxMessageBytes: 1000)
            var all: [FramedEvent] = []
            var bytes = Array(stream.utf8)[...]
            while !bytes.isEmpty {
                let piece = Array(bytes.prefix(chunkSize))
                bytes = bytes.dropFirst(chunkSize)
                all += piece.withUnsafeBufferPointer { framer.consume($0) }
            }
            #expect(messages(all) == ["{\"a\":1}", "[]"], "chunk size \(chunkSize)")
        }
    }

    @Test func contentLengthCountsBytes() {
        var framer = MessageFramer(maxMessageBytes: 1000)
        let body = "\"é\""
        #expect(messages(feed(&framer, "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")) == [body])
    }

    @Test func oversizedBodyIsSkippedWithoutBuffering() {
        var framer = MessageFramer(maxMessageBytes: 10)
        let events = feed(&framer, "Content-Length: 20\r\n\r\n01234567890123456789Content-Length: 2\r\n\r\n{}")
        #expect(events == [.oversized(declaredBytes: 20), .message(Array("{}".utf8))])
    }

    @Test func malformedHeaderIsReportedAndParsingContinues() {
        var framer = MessageFramer(maxMessageBytes: 100)
        let events = feed(&framer, "Content-Type: x\r\n\r\nContent-Length: 2\r\n\r\n{}")
        #expect(events.count == 2)
        if case .malformedHeader = events[0] {} else { Issue.record("expected malformed header, got \(events[0])") }
        #expect(events[1] == .message(Array("{}".utf8)))
    }

    @Test func newlineDelimitedWithCRLFBlankLinesAndOversizedLine() {
        var framer = MessageFramer(maxMessageBytes: 8)
        let events = feed(&framer, "{}\r\n\n  \n[1,2]\n{\"long\":\"line\"}\n{}\n")
        #expect(events == [
            .message(Array("{}".utf8)), .message(Array("[1,2]".utf8)), .oversized(declaredBytes: 15), .message(Array("{}".utf8)),
        ])
    }

    @Test func oversizedLineSplitAcrossReads() {
        var framer = MessageFramer(maxMessageBytes: 8)
        var events = feed(&framer, "{\"a\":")
        events += feed(&framer, "\"bbbbbbbbbbbbbbbb")
        events += feed(&framer, "bbbb\"}\n[]\n")
        #expect(events == [.oversized(declaredBytes: nil), .message(Array("[]".utf8))])
    }

    @Test func headerBlockOverTheCapIsRejectedEvenInOneRead() {
        var framer = MessageFramer(maxMessageBytes: 1000)
        let padding = String(repeating: "a", count: 17_000)
        let events = feed(&framer, "Content-Length: 2\r\nX-Pad: \(padding)\r\n\r\n{}Content-Length: 2\r\n\r\n[]")
        guard case .malformedHeader(let reason)? = events.first else {
            Issue.record("expected a malformed header, got \(events)")
            return
        }
        #expect(reason.contains("16384"))
        // The oversized block's body was skipped; the next message is intact.
        #expect(messages(events) == ["[]"])
    }

    @Test func duplicateContentLengthIsRejected() {
        var framer = MessageFramer(maxMessageBytes: 1000)
        let events = feed(&framer, "Content-Length: 2\r\ncontent-length: 2\r\n\r\n{}")
        #expect(events.first == .malformedHeader("duplicate Content-Length header"))
        var signs = MessageFramer(maxMessageBytes: 1000)
        #expect(feed(&signs, "Content-Length: +2\r\n\r\n{}").first == .malformedHeader("invalid Content-Length: +2"))
    }
}
